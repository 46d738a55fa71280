//! Validation of the pod's and the containers' security contexts: users, capabilities,
//! seccomp and AppArmor profiles, `procMount`, and the pod's `sysctls`.
//!
//! What the API server checks is checked here with its phrasing. What the kubelet decides at
//! run time against its own configuration (the sysctl allowlist, `runAsNonRoot` against the
//! image's user) is left to [`crate::runtime::security`], which knows that configuration.

use super::names::capability_name;
use super::{non_negative, not_yet, unsupported, Errors};
use crate::manifest::pod::{Pod, SeccompProfile, SecurityContext};
use std::collections::BTreeSet;

/// Where a sysctl's effect lives; only namespaced ones may be set for a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    Ipc,
    Net,
}

impl SysctlNamespace {
    /// The word the kubelet uses in its messages (`not allowed with host net enabled`).
    pub fn word(self) -> &'static str {
        match self {
            SysctlNamespace::Ipc => "ipc",
            SysctlNamespace::Net => "net",
        }
    }
}

/// `net/ipv4/ip_forward` is `net.ipv4.ip_forward`: the kubelet's `NormalizeName` (a name whose
/// first separator is a slash uses slashes throughout, and dots inside its parts).
pub fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes().get(i) == Some(&b'/') => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The kubelet's `GetNamespace`: which namespace a (normalized) sysctl belongs to, if any.
pub fn sysctl_namespace(name: &str) -> Option<SysctlNamespace> {
    const IPC: &[&str] = &[
        "kernel.sem",
        "kernel.shm_rmid_forced",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
    ];
    let name = name.strip_suffix('*').unwrap_or(name);
    if IPC.contains(&name)
        || ["kernel.shm", "kernel.msg", "fs.mqueue."]
            .iter()
            .any(|p| name.starts_with(p))
    {
        Some(SysctlNamespace::Ipc)
    } else if name.starts_with("net.") {
        Some(SysctlNamespace::Net)
    } else {
        None
    }
}

/// The API's sysctl name rule: dot- or slash-separated parts of `[a-z0-9_-]`, each starting
/// and ending with a letter or digit, at most 253 characters.
fn valid_sysctl_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split(['.', '/']).all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_'
                })
                && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
                && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
        })
}

pub(super) fn validate_pod_security(pod: &Pod, e: &mut Errors) {
    let s = &pod.spec;
    let Some(sc) = &s.security_context else {
        return;
    };
    let path = "spec.securityContext";
    non_negative(e, &format!("{path}.runAsUser"), sc.run_as_user);
    non_negative(e, &format!("{path}.runAsGroup"), sc.run_as_group);
    non_negative(e, &format!("{path}.fsGroup"), sc.fs_group);
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        non_negative(e, &format!("{path}.supplementalGroups[{i}]"), Some(*g));
    }
    if let Some(p) = sc.fs_group_change_policy.as_deref() {
        const POLICIES: &[&str] = &["OnRootMismatch", "Always"];
        if !POLICIES.contains(&p) {
            e.add(
                format!("{path}.fsGroupChangePolicy"),
                unsupported(p, POLICIES),
            );
        }
    }
    if let Some(p) = sc.supplemental_groups_policy.as_deref() {
        if p != "Merge" {
            not_yet(
                e,
                &format!("{path}.supplementalGroupsPolicy"),
                p,
                "supplementalGroupsPolicy other than Merge",
            );
        }
    }
    if let Some(sp) = &sc.seccomp_profile {
        seccomp(e, &format!("{path}.seccompProfile"), sp);
    }
    if let Some(ap) = &sc.app_armor_profile {
        app_armor(e, &format!("{path}.appArmorProfile"), &ap.kind);
    }
    let mut seen = BTreeSet::new();
    for (i, sysctl) in sc.sysctls.iter().enumerate() {
        let field = format!("{path}.sysctls[{i}].name");
        let name = normalize_sysctl(&sysctl.name);
        if !valid_sysctl_name(&sysctl.name) {
            e.add(field, format!("Invalid value: {:?}: must have at most 253 characters and consist of dot- or slash-separated parts of lower-case letters, digits, '-' and '_'", sysctl.name));
        } else if !seen.insert(name.clone()) {
            e.add(field, format!("Duplicate value: {:?}", sysctl.name));
        } else {
            match sysctl_namespace(&name) {
                Some(SysctlNamespace::Net) if s.host_network => e.add(
                    field,
                    format!("Invalid value: {:?}: may not be specified when 'hostNetwork' is true", sysctl.name),
                ),
                Some(SysctlNamespace::Ipc) if s.host_ipc => e.add(
                    field,
                    format!("Invalid value: {:?}: may not be specified when 'hostIPC' is true", sysctl.name),
                ),
                Some(_) => {}
                None => e.add(
                    field,
                    format!("Forbidden: {:?}: not a namespaced sysctl: a pod may only set sysctls of its own network or IPC namespace", sysctl.name),
                ),
            }
        }
    }
}

pub(super) fn validate_container_security(sc: &SecurityContext, path: &str, e: &mut Errors) {
    let sp = format!("{path}.securityContext");
    non_negative(e, &format!("{sp}.runAsUser"), sc.run_as_user);
    non_negative(e, &format!("{sp}.runAsGroup"), sc.run_as_group);
    if let Some(caps) = &sc.capabilities {
        for (kind, list) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (i, cap) in list.iter().enumerate() {
                if !cap.eq_ignore_ascii_case("ALL") && capability_name(cap).is_none() {
                    e.add(
                        format!("{sp}.capabilities.{kind}[{i}]"),
                        format!("Invalid value: {cap:?}: not a Linux capability"),
                    );
                }
            }
        }
    }
    if let Some(p) = &sc.seccomp_profile {
        seccomp(e, &format!("{sp}.seccompProfile"), p);
    }
    if let Some(ap) = &sc.app_armor_profile {
        app_armor(e, &format!("{sp}.appArmorProfile"), &ap.kind);
    }
    if let Some(pm) = sc.proc_mount.as_deref() {
        match pm {
            "Default" => {}
            "Unmasked" => not_yet(e, &format!("{sp}.procMount"), pm, "procMount Unmasked"),
            other => e.add(
                format!("{sp}.procMount"),
                unsupported(other, &["Default", "Unmasked"]),
            ),
        }
    }
    if sc.privileged == Some(true) && sc.allow_privilege_escalation == Some(false) {
        e.add(
            format!("{sp}.allowPrivilegeEscalation"),
            "Invalid value: false: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        );
    }
}

fn seccomp(e: &mut Errors, path: &str, p: &SeccompProfile) {
    const TYPES: &[&str] = &["Localhost", "RuntimeDefault", "Unconfined"];
    let local = p.localhost_profile.as_deref().filter(|l| !l.is_empty());
    match (p.kind.as_str(), local) {
        ("", _) => e.add(format!("{path}.type"), "Required value"),
        ("Localhost", None) => e.add(
            format!("{path}.localhostProfile"),
            "Required value: must be set when seccomp type is Localhost",
        ),
        ("Localhost", Some(l)) if l.starts_with('/') => e.add(
            format!("{path}.localhostProfile"),
            format!("Invalid value: {l:?}: must be a relative path"),
        ),
        ("Localhost", Some(l)) if l.split('/').any(|part| part == "..") => e.add(
            format!("{path}.localhostProfile"),
            format!("Invalid value: {l:?}: must not contain '..'"),
        ),
        ("Localhost", Some(_)) => {}
        (t, _) if !TYPES.contains(&t) => e.add(format!("{path}.type"), unsupported(t, TYPES)),
        (_, Some(l)) => e.add(
            format!("{path}.localhostProfile"),
            format!("Invalid value: {l:?}: can only be set when seccomp type is Localhost"),
        ),
        _ => {}
    }
}

fn app_armor(e: &mut Errors, path: &str, kind: &str) {
    match kind {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" => not_yet(
            e,
            &format!("{path}.type"),
            kind,
            "AppArmor profile type Localhost",
        ),
        "" => e.add(format!("{path}.type"), "Required value"),
        t => e.add(
            format!("{path}.type"),
            unsupported(t, &["Localhost", "RuntimeDefault", "Unconfined"]),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_normalize_and_belong_to_namespaces() {
        assert_eq!(
            normalize_sysctl("net/ipv4/ip_forward"),
            "net.ipv4.ip_forward"
        );
        assert_eq!(
            normalize_sysctl("net/ipv4/conf/eno2.100/rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            normalize_sysctl("net.ipv4.conf.eno2/100.rp_filter"),
            "net.ipv4.conf.eno2/100.rp_filter"
        );
        assert_eq!(
            sysctl_namespace("net.core.somaxconn"),
            Some(SysctlNamespace::Net)
        );
        assert_eq!(
            sysctl_namespace("kernel.shm_rmid_forced"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(
            sysctl_namespace("kernel.msgmax"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(
            sysctl_namespace("fs.mqueue.msg_max"),
            Some(SysctlNamespace::Ipc)
        );
        assert_eq!(sysctl_namespace("kernel.hostname"), None);
        assert_eq!(sysctl_namespace("vm.swappiness"), None);
        assert!(valid_sysctl_name("net.ipv4.conf.eth0/100.rp_filter"));
        assert!(
            !valid_sysctl_name("net..x") && !valid_sysctl_name("Net.x") && !valid_sysctl_name("")
        );
    }
}
