//! A container's environment: the image's, the pod's `env` with `$(VAR)` expansion, and the
//! downward API (`fieldRef`, `resourceFieldRef`) as the kubelet resolves it.

use super::{BundleError, BundleInput};
use crate::config::Config;
use crate::manifest::pod::{Container, QuantityValue, ResourceFieldRef};
use crate::manifest::quantity::Quantity;
use crate::manifest::StaticPod;
use std::collections::{BTreeMap, HashMap};

/// The node's allocatable resources (capacity less `systemReserved`, the figures the Node
/// object shows), which a `resourceFieldRef` to a limit that is not set resolves to, as the
/// kubelet's `defaultPodLimitsForDownwardAPI` does.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Allocatable {
    pub cpu_milli: i128,
    pub memory: i128,
    pub ephemeral_storage: i128,
}

impl Allocatable {
    /// Read from the host only when `c` has a `resourceFieldRef`: no cost for other starts.
    pub fn for_container(c: &Container, config: &Config) -> Allocatable {
        let wanted = c.env.iter().any(|e| {
            e.value_from
                .as_ref()
                .is_some_and(|v| v.resource_field_ref.is_some())
        });
        if !wanted {
            return Allocatable::default();
        }
        Allocatable::of_node(config)
    }

    /// As [`Allocatable::for_container`], for the `resourceFieldRef`s of the pod's
    /// downwardAPI volumes.
    pub fn for_volumes(pod: &StaticPod, config: &Config) -> Allocatable {
        let wanted = pod.pod.spec.volumes.iter().any(|v| {
            crate::manifest::downward::DownwardVolume::of(v, "")
                .and_then(Result::ok)
                .is_some_and(|d| d.files.iter().any(|(_, f)| f.resource_field_ref.is_some()))
        });
        if !wanted {
            return Allocatable::default();
        }
        Allocatable::of_node(config)
    }

    fn of_node(config: &Config) -> Allocatable {
        let reserved = |res: &str, milli: bool| {
            config
                .system_reserved
                .get(res)
                .and_then(|q| Quantity::parse(q))
                .map_or(0, |q| if milli { q.milli() } else { q.value() })
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i128;
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = crate::mirror::node::mem_total_kib(&meminfo) as i128 * 1024;
        let disk = rustix::fs::statvfs(&config.root_dir)
            .map_or(0, |s| s.f_blocks as i128 * s.f_frsize as i128);
        Allocatable {
            cpu_milli: (cpus * 1000 - reserved("cpu", true)).max(0),
            memory: (memory - reserved("memory", false)).max(0),
            ephemeral_storage: (disk - reserved("ephemeral-storage", false)).max(0),
        }
    }
}

/// Why a `resourceFieldRef` names nothing this node can give a value for.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("no container {0:?} in the pod")]
    NoSuchContainer(String),
    #[error("unsupported container resource: {0}")]
    Unsupported(String),
}

/// The kubelet's `ExtractContainerResourceValue`: the named container's limit (the node's
/// allocatable when unset) or request (its limit when unset, as API defaulting sets it; else
/// 0), divided by `divisor` (default 1) and rounded up. CPU is counted in millicores.
pub fn resource_field_value(
    pod: &StaticPod,
    current: &Container,
    r: &ResourceFieldRef,
    node: &Allocatable,
) -> Result<String, ResourceError> {
    let c = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => current,
        Some(name) => {
            let spec = &pod.pod.spec;
            spec.containers
                .iter()
                .chain(&spec.init_containers)
                .find(|c| c.name == name)
                .ok_or_else(|| ResourceError::NoSuchContainer(name.into()))?
        }
    };
    let get = |m: &BTreeMap<String, QuantityValue>, k: &str| {
        m.get(k).and_then(|q| Quantity::parse(&q.as_text()))
    };
    let (kind, res) = r
        .resource
        .split_once('.')
        .ok_or_else(|| ResourceError::Unsupported(r.resource.clone()))?;
    let limit = get(&c.resources.limits, res);
    let cpu = res == "cpu";
    // In milli-units for CPU, whole units otherwise.
    let amount = |q: Quantity| if cpu { q.milli() } else { q.value() };
    let node_value = match res {
        "cpu" => node.cpu_milli,
        "memory" => node.memory,
        "ephemeral-storage" => node.ephemeral_storage,
        _ => return Err(ResourceError::Unsupported(r.resource.clone())),
    };
    let value = match kind {
        "limits" => limit.map_or(node_value, amount),
        "requests" => get(&c.resources.requests, res).or(limit).map_or(0, amount),
        _ => return Err(ResourceError::Unsupported(r.resource.clone())),
    };
    let divisor = r
        .divisor
        .as_ref()
        .and_then(|d| Quantity::parse(&d.as_text()))
        .map(amount)
        .filter(|d| *d > 0)
        .unwrap_or(if cpu { 1000 } else { 1 });
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// Resolves a downward-API field path for this pod.
pub fn field_value(pod: &StaticPod, path: &str, host_ip: &str, pod_ip: &str) -> String {
    let m = &pod.pod.metadata;
    let quoted = |p: &str| p.strip_suffix("']").map(|k| k.to_string());
    match path {
        "metadata.name" => m.name.clone(),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        "spec.nodeName" => pod.pod.spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .pod
            .spec
            .service_account_name
            .clone()
            .unwrap_or_default(),
        "status.hostIP" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        p => {
            if let Some(k) = p.strip_prefix("metadata.labels['").and_then(quoted) {
                m.labels.get(&k).cloned().unwrap_or_default()
            } else if let Some(k) = p.strip_prefix("metadata.annotations['").and_then(quoted) {
                m.annotations.get(&k).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
    }
}

/// The container's variables in order of first definition; setting one again replaces its
/// value in place. A map beside the list keeps every lookup O(1), so an image or pod with
/// thousands of variables costs linear time at each start.
#[derive(Default)]
struct Vars {
    list: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Vars {
    fn set(&mut self, k: String, v: String) {
        match self.index.get(&k) {
            Some(&i) => self.list[i].1 = v,
            None => {
                self.index.insert(k.clone(), self.list.len());
                self.list.push((k, v));
            }
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.index.get(k).map(|&i| self.list[i].1.as_str())
    }
}

/// Image env first, then the pod's (later entries win, as in Kubernetes), with `$(VAR)`
/// references to earlier variables expanded.
pub fn environment(input: &BundleInput) -> Result<Vec<String>, BundleError> {
    let mut vars = Vars::default();
    for kv in &input.image.env {
        if let Some((k, v)) = kv.split_once('=') {
            vars.set(k.into(), v.into());
        }
    }
    if vars.get("PATH").is_none() {
        vars.set(
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    vars.set("HOSTNAME".into(), input.hostname.clone());
    for e in &input.container.env {
        let from = e.value_from.as_ref();
        let value = match (
            &e.value,
            from.and_then(|v| v.field_ref.as_ref()),
            from.and_then(|v| v.resource_field_ref.as_ref()),
        ) {
            (_, Some(fr), _) => {
                field_value(input.pod, &fr.field_path, &input.host_ip, &input.pod_ip)
            }
            (_, None, Some(r)) => {
                resource_field_value(input.pod, input.container, r, &input.allocatable).map_err(
                    |source| BundleError::EnvResource {
                        env: e.name.clone(),
                        source,
                    },
                )?
            }
            (Some(v), None, None) => expand(v, &vars),
            (None, None, None) => String::new(),
        };
        vars.set(e.name.clone(), value);
    }
    Ok(vars
        .list
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect())
}

/// Kubernetes' `$(VAR)` expansion; `$$(VAR)` escapes; unknown references stay as written.
fn expand(value: &str, vars: &Vars) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix("$(") {
            out.push_str("$(");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
