//! The kubelet's sysctl allowlist: the safe set, plus the node's `allowedUnsafeSysctls`.
//!
//! A pod that sets any other sysctl is refused with the kubelet's reason (`SysctlForbidden`)
//! and message (`forbidden sysctl: "kernel.msgmax" not allowlisted`). Allowed ones are written
//! into the container's `linux.sysctl`; the runtime sets them inside the pod's own network or
//! IPC namespace, which validation already required the pod to have.

use crate::manifest::pod::Pod;
use crate::manifest::validate::{normalize_sysctl, sysctl_namespace, SysctlNamespace};
use std::collections::BTreeMap;

/// The kubelet's `SafeSysctlAllowlist` (Kubernetes 1.32): namespaced, and harmless to the
/// node and to other pods.
pub const SAFE: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn allowlisted(name: &str, unsafe_allowed: &[String]) -> bool {
    SAFE.contains(&name)
        || unsafe_allowed.iter().any(|p| {
            let p = normalize_sysctl(p);
            match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            }
        })
}

/// A sysctl the pod may not set, with the kubelet's message.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("{0:?} not allowlisted")]
    NotAllowlisted(String),
    #[error("{name:?} not allowed with host {namespace} enabled")]
    HostNamespace {
        name: String,
        namespace: &'static str,
    },
}

/// The pod's sysctls by normalized name, or the first refused one.
pub fn allowed(
    pod: &Pod,
    unsafe_allowed: &[String],
) -> Result<BTreeMap<String, String>, SysctlError> {
    let Some(sc) = &pod.spec.security_context else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for s in &sc.sysctls {
        let name = normalize_sysctl(&s.name);
        let ns = sysctl_namespace(&name);
        let host = match ns {
            Some(SysctlNamespace::Net) => pod.spec.host_network,
            Some(SysctlNamespace::Ipc) => pod.spec.host_ipc,
            None => false,
        };
        if !allowlisted(&name, unsafe_allowed) || ns.is_none() {
            return Err(SysctlError::NotAllowlisted(name));
        }
        if let Some(ns) = ns.filter(|_| host) {
            return Err(SysctlError::HostNamespace {
                name,
                namespace: ns.word(),
            });
        }
        out.insert(name, s.value.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::pod::{PodSecurityContext, Sysctl};

    fn pod(names: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.spec.security_context = Some(PodSecurityContext {
            sysctls: names
                .iter()
                .map(|n| Sysctl {
                    name: n.to_string(),
                    value: "1".into(),
                })
                .collect(),
            ..Default::default()
        });
        p
    }

    #[test]
    fn safe_sysctls_pass_and_unsafe_ones_need_the_allowlist() {
        let ok = allowed(
            &pod(&[
                "net/ipv4/ip_unprivileged_port_start",
                "kernel.shm_rmid_forced",
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.contains_key("net.ipv4.ip_unprivileged_port_start"));
        let unsafe_one = pod(&["net.core.somaxconn"]);
        assert_eq!(
            allowed(&unsafe_one, &[]).unwrap_err().to_string(),
            "\"net.core.somaxconn\" not allowlisted"
        );
        assert!(allowed(&unsafe_one, &["net.core.*".into()]).is_ok());
        assert!(allowed(&unsafe_one, &["net.core.somaxconn".into()]).is_ok());
        assert!(allowed(&pod(&["kernel.msgmax"]), &["net.*".into()]).is_err());
        let mut host = pod(&["net.ipv4.tcp_syncookies"]);
        host.spec.host_network = true;
        assert_eq!(
            allowed(&host, &[]).unwrap_err().to_string(),
            "\"net.ipv4.tcp_syncookies\" not allowed with host net enabled"
        );
    }
}
