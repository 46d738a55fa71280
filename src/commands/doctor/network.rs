//! `doctor`'s pod network checks: the CNI configuration staticlet would use (or the default it
//! would write), the plugins it names, iptables for the NAT and hostPort rules, and the kernel
//! options bridge networking needs. Only looks: nothing is written or loaded.

use super::Report;
use crate::config::NetworkConfig;
use crate::network::conf::{self, NetList};
use std::path::Path;

/// What bridge, portmap and ipMasq use (iptables with the nat table, the matches and
/// targets their rules name); missing ones only matter to pods that are not hostNetwork.
const KERNEL_OPTIONS: &[(&[&str], &str)] = &[
    (&["CONFIG_BRIDGE"], "the pod bridge"),
    (&["CONFIG_VETH"], "pod interfaces"),
    (&["CONFIG_NETFILTER"], "iptables"),
    (&["CONFIG_NF_CONNTRACK"], "NAT"),
    (&["CONFIG_NF_NAT"], "NAT"),
    (&["CONFIG_IP_NF_IPTABLES", "CONFIG_NFT_COMPAT"], "iptables"),
    (&["CONFIG_IP_NF_NAT", "CONFIG_NFT_NAT"], "the nat table"),
    (
        &[
            "CONFIG_NETFILTER_XT_TARGET_MASQUERADE",
            "CONFIG_IP_NF_TARGET_MASQUERADE",
        ],
        "ipMasq and hostPort (MASQUERADE)",
    ),
    (
        &["CONFIG_NETFILTER_XT_MATCH_ADDRTYPE"],
        "hostPort (-m addrtype)",
    ),
    (
        &["CONFIG_NETFILTER_XT_MATCH_COMMENT"],
        "the plugins' rules (-m comment)",
    ),
    (
        &["CONFIG_NETFILTER_XT_MATCH_MULTIPORT"],
        "hostPort (-m multiport)",
    ),
    (
        &["CONFIG_NETFILTER_XT_MARK"],
        "hostPort on 127.0.0.1 (MARK)",
    ),
];

pub(super) fn check(r: &mut Report, net: &NetworkConfig) {
    let files = conf::config_files(&net.cni_conf_dir);
    let list = if files.is_empty() {
        r.ok(
            "pod network",
            &format!(
                "no CNI configuration in {}: staticlet writes its default network there on first use ({}, {}; bridge, host-local, portmap, loopback)",
                net.cni_conf_dir.display(),
                conf::DEFAULT_BRIDGE,
                net.pod_cidr
            ),
        );
        conf::parse_file_value(&conf::default_json(&net.pod_cidr))
    } else {
        match conf::load(&net.cni_conf_dir, &net.pod_cidr) {
            Ok(list) => {
                r.ok(
                    "pod network",
                    &format!(
                        "network {:?} from {} (plugins: {})",
                        list.name,
                        list.file.display(),
                        list.types().join(", ")
                    ),
                );
                Some(list)
            }
            Err(e) => {
                r.fail(
                    "pod network",
                    &format!("{e}; pods that are not hostNetwork cannot start"),
                );
                None
            }
        }
    };
    if let Some(list) = list {
        check_plugins(r, &list, net);
        check_iptables(r, &list);
    }
    check_kernel(r);
}

/// Every plugin the list names, and the IPAM plugins they delegate to.
fn check_plugins(r: &mut Report, list: &NetList, net: &NetworkConfig) {
    let mut kinds: Vec<String> = Vec::new();
    for p in &list.plugins {
        let ipam = p["ipam"]["type"].as_str().map(String::from);
        for kind in [Some(conf::plugin_type(p)), ipam].into_iter().flatten() {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    let dirs: Vec<String> = net
        .cni_bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let mut found = Vec::new();
    for kind in kinds {
        match crate::network::has_plugin(&kind, &net.cni_bin_dirs) {
            Some(path) => found.push(path.display().to_string()),
            None => r.fail(
                "CNI plugins",
                &format!(
                    "{kind:?} not found in {}: install the CNI plugins (apt-get install containernetworking-plugins; Buildroot: BR2_PACKAGE_CNI_PLUGINS=y) or set cniBinDir",
                    dirs.join(", ")
                ),
            ),
        }
    }
    if !found.is_empty() {
        r.ok("CNI plugins", &found.join(", "));
    }
}

/// ipMasq and portmap write iptables rules: the command must be there.
fn check_iptables(r: &mut Report, list: &NetList) {
    let needs = list.plugins.iter().any(|p| {
        p["ipMasq"] == serde_json::Value::Bool(true)
            || matches!(p["type"].as_str(), Some("portmap" | "firewall"))
    });
    if !needs {
        return;
    }
    match crate::sys::host::which(Path::new("iptables")) {
        Some(p) => r.ok("iptables", &format!("{} (for ipMasq and hostPort rules)", p.display())),
        None => r.fail(
            "iptables",
            "not found on PATH: the network's ipMasq/portmap rules need it (apt-get install iptables; Buildroot: BR2_PACKAGE_IPTABLES=y)",
        ),
    }
}

fn check_kernel(r: &mut Report) {
    let Some(config) = crate::sys::host::kernel_config() else {
        return; // said once by the general kernel check
    };
    let set = |k: &str| matches!(config.get(k).map(String::as_str), Some("y" | "m"));
    let missing: Vec<String> = KERNEL_OPTIONS
        .iter()
        .filter(|(any, _)| !any.iter().any(|k| set(k)))
        .map(|(any, what)| format!("{} ({what})", any.join(" or ")))
        .collect();
    if missing.is_empty() {
        r.ok(
            "network kernel config",
            "bridge, veth, netfilter NAT and the iptables matches are enabled",
        );
    } else {
        r.warn(
            "network kernel config",
            &format!(
                "not set: {}; pods that are not hostNetwork need them (Buildroot: STATICLET_LINUX_CONFIG_FIXUPS sets them)",
                missing.join(", ")
            ),
        );
    }
}
