//! A pod's attachment to its network, as containerd's CRI plugin runs it through libcni: ADD
//! every plugin of the list in order when the sandbox is made (each given the previous one's
//! result), DEL them in reverse when it goes, CHECK them when an agent restart adopts it.
//! A failed ADD is undone with DEL before it is reported, and every step is recorded first
//! (see [`super::record`]), so no address is ever taken twice or lost.

use super::conf::{self, NetList};
use super::exec::{self, Call};
use super::record::{self, Record, State};
use super::{hostport, result, NetworkError};
use crate::config::NetworkConfig;
use crate::manifest::StaticPod;
use crate::sys::host::{fs_type, NSFS_MAGIC, PROC_SUPER_MAGIC};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;

/// The interface name the kubelet asks for in every pod.
pub const IF_NAME: &str = "eth0";

/// Attaches the pod's network namespace `netns` (pinned under `pod_dir`) to the pod network,
/// or adopts the attachment it already has; returns the pod's IPs.
pub fn attach(
    pod: &StaticPod,
    pod_dir: &Path,
    netns: &Path,
    cfg: &NetworkConfig,
) -> Result<Vec<IpAddr>, NetworkError> {
    let maps = hostport::mappings(pod);
    let name = pod.full_name();
    if let Some(rec) = record::load(pod_dir)? {
        if rec.state == State::Ready && rec.netns == netns && is_namespace(netns) {
            adopt(pod, &rec, &maps);
            let r = rec.result.clone().unwrap_or_default();
            return Ok(result::pod_ips(&r, &rec.if_name));
        }
        // Interrupted, or the namespace it was made for is gone: release it first, or the
        // IPAM plugin would refuse a second address for the same container.
        log::info!("{name}: releasing its previous network attachment before a new one");
        del_record(pod_dir, &rec).map_err(|e| NetworkError::Previous {
            source: Box::new(e),
        })?;
    }
    hostport::hold(pod.uid(), &name, &maps)?;
    let added = add(pod, pod_dir, netns, cfg, &maps);
    if added.is_err() {
        hostport::release(pod.uid());
    }
    added
}

/// An attachment found after an agent restart: the pod keeps its address. CHECK reports what
/// the plugins find wrong; the running pod is not disturbed for it (the kubelet does not
/// check at all, and some plugin versions report false alarms).
fn adopt(pod: &StaticPod, rec: &Record, maps: &[hostport::PortMapping]) {
    let name = pod.full_name();
    if let Err(e) = hostport::hold(pod.uid(), &name, maps) {
        log::warn!("{name}: {e}; its port mappings stay, but the port is not reserved");
    }
    if let Some(list) = rec.net_list() {
        if let Err(e) = check(&list, rec) {
            log::warn!(
                "{name}: CNI CHECK of its network reports a problem (the pod keeps running): {e}"
            );
        }
    }
}

fn add(
    pod: &StaticPod,
    pod_dir: &Path,
    netns: &Path,
    cfg: &NetworkConfig,
    maps: &[hostport::PortMapping],
) -> Result<Vec<IpAddr>, NetworkError> {
    let list = conf::load(&cfg.cni_conf_dir, &cfg.pod_cidr)?;
    if !maps.is_empty() && !list.has_capability("portMappings") {
        return Err(NetworkError::NoPortMapping {
            file: list.file.clone(),
            ports: maps
                .iter()
                .map(|m| m.host_port.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let capability_args = if maps.is_empty() {
        json!({})
    } else {
        json!({"portMappings": hostport::capability_arg(maps)})
    };
    let container_id = attachment_id(pod.uid());
    let mut rec = Record {
        state: State::Adding,
        cni_args: exec::pod_args(pod.namespace(), pod.name(), &container_id, pod.uid()),
        container_id,
        if_name: IF_NAME.into(),
        netns: netns.to_path_buf(),
        cni_path: cfg.cni_bin_dirs.clone(),
        network: list.to_json(),
        capability_args,
        result: None,
    };
    record::save(pod_dir, &rec)?;
    let netns_text = netns.to_string_lossy();
    match run_add(&list, &rec, &netns_text) {
        Ok(answer) => {
            let ips = result::pod_ips(&answer, IF_NAME);
            rec.state = State::Ready;
            rec.result = Some(answer);
            record::save(pod_dir, &rec)?;
            Ok(ips)
        }
        Err(e) => {
            // Undo what the plugins that ran took, as containerd does after a failed setup.
            match run_del(&list, &rec, &netns_text) {
                Ok(()) => {
                    let _ = record::remove(pod_dir);
                }
                Err(d) => log::warn!(
                    "{}: undoing the failed network setup: {d}; retried before the next attempt",
                    pod.full_name()
                ),
            }
            Err(e)
        }
    }
}

/// The CNI container ID of a new attachment: the pod UID and when it was made, one per
/// sandbox as containerd's sandbox IDs. A namespace that vanished without a reboot leaves
/// its bridge masquerade rule behind (DEL cannot see its addresses); a new attachment with
/// the same ID would share that rule's chain, and its DEL could then never remove it.
fn attachment_id(uid: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{uid}-{nanos:x}")
}

fn call<'a>(rec: &'a Record, netns: &'a str) -> Call<'a> {
    Call {
        container_id: &rec.container_id,
        netns,
        if_name: &rec.if_name,
        args: &rec.cni_args,
        path: &rec.cni_path,
    }
}

fn in_network(list: &NetList, e: NetworkError) -> NetworkError {
    NetworkError::InNetwork {
        name: list.name.clone(),
        file: list.file.clone(),
        source: Box::new(e),
    }
}

fn run_add(list: &NetList, rec: &Record, netns: &str) -> Result<Value, NetworkError> {
    let mut prev: Option<Value> = None;
    for plugin in &list.plugins {
        let kind = conf::plugin_type(plugin);
        let stdin = exec::plugin_config(
            plugin,
            &list.name,
            &list.cni_version,
            prev.as_ref(),
            &rec.capability_args,
        );
        let out = exec::invoke(&kind, "ADD", &stdin, &call(rec, netns))
            .map_err(|e| in_network(list, e))?;
        let answer: Value = serde_json::from_slice(&out).map_err(|e| {
            in_network(
                list,
                NetworkError::NoResult {
                    plugin: kind.clone(),
                    message: e.to_string(),
                },
            )
        })?;
        prev = Some(answer);
    }
    Ok(prev.unwrap_or_default())
}

/// DEL in reverse order, every plugin even after one failed (each cleans what it can); the
/// first failure is returned. `netns` is empty when the namespace is gone, as the CNI spec
/// and containerd have it.
fn run_del(list: &NetList, rec: &Record, netns: &str) -> Result<(), NetworkError> {
    let prev = rec
        .result
        .as_ref()
        .filter(|_| exec::version_at_least(&list.cni_version, "0.4.0"));
    let mut first = None;
    for plugin in list.plugins.iter().rev() {
        let kind = conf::plugin_type(plugin);
        let stdin = exec::plugin_config(
            plugin,
            &list.name,
            &list.cni_version,
            prev,
            &rec.capability_args,
        );
        if let Err(e) = exec::invoke(&kind, "DEL", &stdin, &call(rec, netns)) {
            first.get_or_insert(in_network(list, e));
        }
    }
    first.map_or(Ok(()), Err)
}

/// CHECK every plugin with the recorded result, where the spec version has CHECK (0.4.0) and
/// the list does not turn it off (`disableCheck`).
fn check(list: &NetList, rec: &Record) -> Result<(), NetworkError> {
    let Some(prev) = rec.result.as_ref() else {
        return Ok(());
    };
    if list.disable_check || !exec::version_at_least(&list.cni_version, "0.4.0") {
        return Ok(());
    }
    let netns = rec.netns.to_string_lossy();
    for plugin in &list.plugins {
        let kind = conf::plugin_type(plugin);
        let stdin = exec::plugin_config(
            plugin,
            &list.name,
            &list.cni_version,
            Some(prev),
            &rec.capability_args,
        );
        exec::invoke(&kind, "CHECK", &stdin, &call(rec, &netns))
            .map_err(|e| in_network(list, e))?;
    }
    Ok(())
}

/// Whether `path` is a mounted network namespace (a pinned one, or /proc/<pid>/ns/net).
fn is_namespace(path: &Path) -> bool {
    matches!(fs_type(path), Some(NSFS_MAGIC | PROC_SUPER_MAGIC))
}

/// Releases what a record describes and removes it.
fn del_record(pod_dir: &Path, rec: &Record) -> Result<(), NetworkError> {
    let list = rec.net_list().ok_or_else(|| {
        NetworkError::Record(record::RecordError::Corrupt {
            path: record::path(pod_dir),
            message: "no network configuration in it".into(),
        })
    })?;
    let netns = if is_namespace(&rec.netns) {
        rec.netns.to_string_lossy().to_string()
    } else {
        String::new()
    };
    run_del(&list, rec, &netns)?;
    record::remove(pod_dir)?;
    Ok(())
}

/// Detaches the pod of `pod_dir` from its network (DEL, while its namespace is still there)
/// and lets go of its host ports. Nothing to do for a pod without an attachment.
pub fn release(pod_dir: &Path) -> Result<(), NetworkError> {
    if let Some(uid) = pod_dir.file_name() {
        hostport::release(&uid.to_string_lossy());
    }
    match record::load(pod_dir)? {
        Some(rec) => del_record(pod_dir, &rec),
        None => Ok(()),
    }
}

/// For the agent's start-up sweep: releases every recorded attachment of a pod that is not
/// `live` (removed while the agent was down, its directory removed by someone, a failed
/// release at the last teardown). One that cannot be released is logged and kept for the
/// next start. `root` is the root dir, `pods/<uid>` its pod directories.
pub fn release_orphans(root: &Path, live: &std::collections::HashSet<String>) {
    for uid in record::recorded(root)
        .into_iter()
        .filter(|u| !live.contains(u))
    {
        let pod_dir = root.join("pods").join(&uid);
        match release(&pod_dir) {
            Ok(()) => log::info!("released the network attachment of pod {uid}, which is gone"),
            Err(e) => log::warn!(
                "pod {uid} (gone): {e}; its record {} is kept to release it at the next start",
                record::path(&pod_dir).display()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
