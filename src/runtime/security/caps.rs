//! Capability sets, computed as containerd's CRI plugin computes them for the kubelet.
//!
//! The default set is containerd's; `add` is applied before `drop`; `ALL` (in any case) in
//! `add` means every capability this host has, in `drop` none; names are case-insensitive,
//! with or without `CAP_`. Bounding, effective and permitted get the result; inheritable and
//! ambient stay empty (containerd since CVE-2022-24769), so a dropped capability can never be
//! asked for in another set, which the kernel refuses (`capset: Operation not permitted`).
//! A privileged container gets the host's bounding set: what this host really has, never a
//! fixed list that may name one the kernel or the agent lacks.

use crate::manifest::pod::Container;
use crate::manifest::validate::{capability_name, CAPABILITIES};
use std::sync::OnceLock;

/// containerd's default capability set for Kubernetes containers.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The five capability sets of a container's process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapSets {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
    pub inheritable: Vec<String>,
    pub ambient: Vec<String>,
}

impl CapSets {
    fn of(caps: Vec<String>) -> CapSets {
        CapSets {
            bounding: caps.clone(),
            effective: caps.clone(),
            permitted: caps,
            inheritable: Vec::new(),
            ambient: Vec::new(),
        }
    }
}

/// The capability names set in a `/proc/<pid>/status` mask (`CapBnd:\t000001ffffffffff`),
/// in bit order; bits the agent has no name for are left out (the runtime could not name
/// them either).
pub fn names_of_mask(hex: &str) -> Option<Vec<String>> {
    let mask = u64::from_str_radix(hex.trim(), 16).ok()?;
    Some(
        CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1u64 << bit) != 0)
            .map(|(_, name)| format!("CAP_{name}"))
            .collect(),
    )
}

/// This host's bounding set, as the agent has it (read once).
pub fn host_capabilities() -> Vec<String> {
    static HOST: OnceLock<Vec<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(names_of_mask)
            .unwrap_or_else(|| CAPABILITIES.iter().map(|c| format!("CAP_{c}")).collect())
    })
    .clone()
}

/// The container's capability sets; `host` is [`host_capabilities`].
pub fn capabilities(c: &Container, privileged: bool, host: &[String]) -> CapSets {
    if privileged {
        return CapSets::of(host.to_vec());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let Some(sc) = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref())
    else {
        return CapSets::of(caps);
    };
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    if sc.add.iter().any(is_all) {
        caps = host.to_vec();
    }
    if sc.drop.iter().any(is_all) {
        caps.clear();
    }
    for name in sc.add.iter().filter_map(|a| capability_name(a)) {
        if !caps.contains(&name) {
            caps.push(name);
        }
    }
    for name in sc.drop.iter().filter_map(|d| capability_name(d)) {
        caps.retain(|c| *c != name);
    }
    CapSets::of(caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::pod::{Capabilities, SecurityContext};

    fn container(add: &[&str], drop: &[&str]) -> Container {
        Container {
            security_context: Some(SecurityContext {
                capabilities: Some(Capabilities {
                    add: add.iter().map(|s| s.to_string()).collect(),
                    drop: drop.iter().map(|s| s.to_string()).collect(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn host() -> Vec<String> {
        ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn drop_all_leaves_every_set_empty_and_add_after_it_works() {
        let s = capabilities(&container(&["net_bind_service"], &["all"]), false, &host());
        assert_eq!(s.bounding, ["CAP_NET_BIND_SERVICE"]);
        assert_eq!(s.effective, s.bounding);
        assert_eq!(s.permitted, s.bounding);
        assert!(s.inheritable.is_empty() && s.ambient.is_empty());
        let none = capabilities(&container(&[], &["ALL"]), false, &host());
        assert!(none.bounding.is_empty() && none.ambient.is_empty());
    }

    #[test]
    fn names_in_any_case_with_or_without_the_prefix() {
        let s = capabilities(
            &container(&["cap_net_admin", "Sys_Time"], &["KILL", "cap_net_raw"]),
            false,
            &host(),
        );
        assert!(s.bounding.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(s.bounding.contains(&"CAP_SYS_TIME".to_string()));
        assert!(!s.bounding.contains(&"CAP_KILL".to_string()));
        assert!(!s.bounding.contains(&"CAP_NET_RAW".to_string()));
        assert!(s.bounding.contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn add_all_and_privileged_take_the_host_set() {
        let s = capabilities(&container(&["ALL"], &["chown"]), false, &host());
        assert_eq!(s.bounding, ["CAP_KILL", "CAP_NET_ADMIN"]);
        let p = capabilities(&container(&[], &["ALL"]), true, &host());
        assert_eq!(p.bounding, host());
        assert!(p.ambient.is_empty());
    }

    #[test]
    fn masks_name_the_capabilities_in_bit_order() {
        assert_eq!(
            names_of_mask("0000000000000021").unwrap(),
            ["CAP_CHOWN", "CAP_KILL"]
        );
        let all = names_of_mask("000001ffffffffff").unwrap();
        assert_eq!(all.len(), 41);
        assert_eq!(all[40], "CAP_CHECKPOINT_RESTORE");
        assert_eq!(all[24], "CAP_SYS_RESOURCE");
        assert!(names_of_mask("zz").is_none());
        assert!(!host_capabilities().is_empty());
    }
}
