//! The Node object and the Lease a node keeps in the API server: built here as plain JSON
//! from host facts read once (`HostFacts`), so `kubectl get nodes -o wide` shows what a
//! kubelet would (addresses, capacity, OS, kernel, runtime) and the builders stay pure.

use crate::manifest::quantity::Quantity;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What the Node reports about this machine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostFacts {
    pub internal_ip: String,
    pub hostname: String,
    pub cpus: u64,
    pub memory_kib: u64,
    pub kernel: String,
    pub os_image: String,
    /// GOARCH name: amd64, arm64, arm...
    pub arch: String,
    pub runtime_version: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl HostFacts {
    /// Reads this host (a few small files and `uname`; cheap enough to repeat).
    pub fn read(runtime_version: &str) -> HostFacts {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        HostFacts {
            internal_ip: crate::network::host_ip(),
            hostname: crate::config::default_node_name(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_kib: mem_total_kib(&read("/proc/meminfo")),
            kernel: uname_release(),
            os_image: pretty_name(&read("/etc/os-release")),
            arch: crate::image::host_platform().1.to_string(),
            runtime_version: runtime_version.to_string(),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// `crun://<version>` (runs `crun --version`, so once per start).
pub fn runtime_version(runtime: &Path) -> String {
    crate::sys::host::runtime_version(runtime)
        .map_or_else(|| "crun://unknown".into(), |v| format!("crun://{v}"))
}

/// `MemTotal:  8049976 kB` from /proc/meminfo.
pub fn mem_total_kib(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `PRETTY_NAME` from /etc/os-release, unquoted.
pub fn pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

fn uname_release() -> String {
    // SAFETY: uname fills the struct; the release field is NUL-terminated within it.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// The kubelet version the Node reports: the API level staticlet speaks, and that it is
/// staticlet.
pub fn kubelet_version() -> String {
    format!("v1.20.0-staticlet-{}", env!("CARGO_PKG_VERSION"))
}

/// The labels a Node is registered with: the well-known three, then the user's.
pub fn labels(
    node: &str,
    facts: &HostFacts,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), node.to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.arch.clone()),
    ]);
    l.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    l
}

/// The Node to create.
pub fn node_object(node: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels}})
}

/// `status` for a merge patch of `nodes/<node>/status`. `ready_since` is when this process
/// first reported Ready (the condition's transition time), `now` the heartbeat;
/// `kubelet_port` is where the kubelet API answers (0: it is off).
pub fn node_status(
    facts: &HostFacts,
    reserved: &BTreeMap<String, String>,
    kubelet_port: u16,
    ready_since: &str,
    now: &str,
) -> Value {
    let cpu_milli = facts.cpus as i128 * 1000;
    let mem_bytes = facts.memory_kib as i128 * 1024;
    let minus = |total: i128, res: &str, milli: bool| -> i128 {
        let r = reserved
            .get(res)
            .and_then(|q| Quantity::parse(q))
            .map_or(0, |q| if milli { q.milli() } else { q.value() });
        (total - r).max(0)
    };
    let cpu_text = |m: i128| {
        if m % 1000 == 0 {
            (m / 1000).to_string()
        } else {
            format!("{m}m")
        }
    };
    let mem_text = |b: i128| {
        if b % 1024 == 0 {
            format!("{}Ki", b / 1024)
        } else {
            b.to_string()
        }
    };
    json!({
        "capacity": {"cpu": cpu_text(cpu_milli), "memory": mem_text(mem_bytes), "pods": "110"},
        "allocatable": {
            "cpu": cpu_text(minus(cpu_milli, "cpu", true)),
            "memory": mem_text(minus(mem_bytes, "memory", false)),
            "pods": "110",
        },
        "addresses": [
            {"type": "InternalIP", "address": facts.internal_ip},
            {"type": "Hostname", "address": facts.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": "",
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel,
            "osImage": facts.os_image,
            "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": kubelet_version(),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": facts.arch,
        },
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "staticlet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": ready_since,
        }],
    })
}

/// The Lease `kube-node-lease/<node>`, owned by the Node; `resource_version` for a PUT.
pub fn lease(node: &str, node_uid: &str, renew: &str, resource_version: Option<&str>) -> Value {
    let mut l = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": node, "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew},
    });
    if let Some(rv) = resource_version {
        l["metadata"]["resourceVersion"] = json!(rv);
    }
    l
}

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_SECONDS: u64 = 40;

/// RFC 3339 with microseconds, the `MicroTime` a Lease's `renewTime` is.
pub fn micro_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            internal_ip: "10.1.2.3".into(),
            hostname: "gw".into(),
            cpus: 4,
            memory_kib: 2_000_000,
            kernel: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            arch: "arm64".into(),
            runtime_version: "crun://1.8.1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn status_subtracts_system_reserved() {
        let reserved = BTreeMap::from([
            ("cpu".to_string(), "250m".to_string()),
            ("memory".to_string(), "64Mi".to_string()),
        ]);
        let s = node_status(&facts(), &reserved, 10250, "t0", "t1");
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(
            s["capacity"],
            json!({"cpu": "4", "memory": "2000000Ki", "pods": "110"})
        );
        assert_eq!(
            s["allocatable"],
            json!({"cpu": "3750m", "memory": "1934464Ki", "pods": "110"})
        );
        assert_eq!(
            s["addresses"][0],
            json!({"type": "InternalIP", "address": "10.1.2.3"})
        );
        assert_eq!(s["nodeInfo"]["architecture"], "arm64");
        assert_eq!(s["nodeInfo"]["containerRuntimeVersion"], "crun://1.8.1");
        assert!(s["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap()
            .contains("staticlet"));
        assert_eq!(s["conditions"][0]["lastTransitionTime"], "t0");
        assert_eq!(s["conditions"][0]["lastHeartbeatTime"], "t1");
        let none = node_status(&facts(), &BTreeMap::new(), 0, "t0", "t1");
        assert_eq!(none["allocatable"], none["capacity"]);
    }

    #[test]
    fn host_files_and_labels() {
        assert_eq!(
            mem_total_kib("MemTotal:        8049976 kB\nMemFree: 1 kB\n"),
            8049976
        );
        assert_eq!(mem_total_kib("garbage"), 0);
        assert_eq!(
            pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(pretty_name(""), "Linux");
        let extra = BTreeMap::from([("example.com/site".to_string(), "berlin".to_string())]);
        let l = labels("node1", &facts(), &extra);
        assert_eq!(l["kubernetes.io/hostname"], "node1");
        assert_eq!(l["kubernetes.io/arch"], "arm64");
        assert_eq!(l["example.com/site"], "berlin");
        let lease = lease("node1", "u-1", "2024-01-01T00:00:00.000001Z", Some("42"));
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(lease["metadata"]["resourceVersion"], "42");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(micro_time(t), "2023-11-14T22:13:20.123456Z");
    }
}
