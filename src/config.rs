//! Configuration: a `StaticletConfiguration` file (or a kubelet `KubeletConfiguration`),
//! then command-line flags on top. The result is one validated [`Config`].
//!
//! Our own kind is strict (an unknown key is an error naming it, so typos don't silently
//! change behaviour); a kubelet file is read for the fields we share and every other field is
//! named once in the log, so an existing kubelet config can be reused as it is.

use crate::manifest::quantity::Quantity;
use crate::sys::timefmt::parse_duration;
use file::StaticletFile;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const API_VERSION: &str = "staticlet.dev/v1alpha1";
pub const KIND: &str = "StaticletConfiguration";
const KUBELET_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/staticlet";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

/// The resolved configuration the agent and the commands run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub node_name: String,
    pub static_pod_path: Option<PathBuf>,
    pub static_pod_url: Option<String>,
    pub static_pod_url_header: BTreeMap<String, Vec<String>>,
    pub manifest_url_ca_file: Option<PathBuf>,
    /// Pinned minisign public keys; when any is set, manifests must be signed.
    pub manifest_public_keys: Vec<PathBuf>,
    pub file_check_frequency: Duration,
    pub http_check_frequency: Duration,
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    pub runtime_path: PathBuf,
    pub status_address: Option<SocketAddr>,
    pub kubeconfig: Option<PathBuf>,
    pub kubeconfig_context: Option<String>,
    pub container_log_max_size: u64,
    pub container_log_max_files: u32,
    pub node_labels: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    pub config_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    pub image_credentials: Option<PathBuf>,
    /// Most processes one container may have (the kubelet's `podPidsLimit`; -1: no limit).
    pub pod_pids_limit: i64,
    /// How long a container start may take in the runtime before it is abandoned (the
    /// kubelet's `runtimeRequestTimeout`, 2 minutes).
    pub runtime_request_timeout: Duration,
    /// The health-gated rollback's default trial (`rollbackAfter`): a changed manifest whose
    /// pod is not healthy within it is rolled back to the last good version. `None`: off,
    /// unless a pod asks with the `staticlet.dev/rollback-after` annotation.
    pub rollback_after: Option<Duration>,
    /// The cgroup every pod cgroup is created under (`cgroupRoot`); `None`: derived from the
    /// root dir by [`default_cgroup_root`]. See [`Config::cgroup_root`].
    pub cgroup_root: Option<String>,
    /// Where `Localhost` seccomp profiles are read from (`seccompProfileRoot`); `None`:
    /// `<rootDir>/seccomp`, as the kubelet's `<root-dir>/seccomp`. See [`Config::seccomp_root`].
    pub seccomp_profile_root: Option<PathBuf>,
    /// The kubelet's `seccompDefault`: containers without a seccomp profile get
    /// `RuntimeDefault` instead of `Unconfined`.
    pub seccomp_default: bool,
    /// The kubelet's `allowedUnsafeSysctls`: names or `prefix*` patterns, each of a namespaced
    /// sysctl, allowed besides the safe set.
    pub allowed_unsafe_sysctls: Vec<String>,
    /// The pod network (CNI) and the DNS pods get.
    pub network: NetworkConfig,
    /// `--node-ip`: the Node's InternalIP and the pods' hostIP (default: the host's first
    /// address).
    pub node_ip: Option<std::net::IpAddr>,
    /// The kubelet API served to the cluster (only with a kubeconfig).
    pub kubelet_api: KubeletApi,
    /// How many events, and how many bytes of them, are kept while they cannot be posted.
    pub event_limits: crate::events::Limits,
    /// KubeletConfiguration fields that staticlet does not use, to be logged once.
    pub ignored_fields: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: default_node_name(),
            static_pod_path: None,
            static_pod_url: None,
            static_pod_url_header: BTreeMap::new(),
            manifest_url_ca_file: None,
            manifest_public_keys: Vec::new(),
            file_check_frequency: Duration::from_secs(20),
            http_check_frequency: Duration::from_secs(20),
            root_dir: PathBuf::from(DEFAULT_ROOT_DIR),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            runtime_path: PathBuf::from("crun"),
            status_address: Some(SocketAddr::from(([127, 0, 0, 1], 10255))),
            kubeconfig: None,
            kubeconfig_context: None,
            container_log_max_size: 10 * 1024 * 1024,
            container_log_max_files: 5,
            node_labels: BTreeMap::new(),
            system_reserved: BTreeMap::new(),
            config_dir: PathBuf::from("/etc/staticlet"),
            insecure_registries: Vec::new(),
            image_credentials: None,
            pod_pids_limit: 1024,
            runtime_request_timeout: Duration::from_secs(120),
            rollback_after: None,
            cgroup_root: None,
            seccomp_profile_root: None,
            seccomp_default: false,
            allowed_unsafe_sysctls: Vec::new(),
            network: NetworkConfig::default(),
            node_ip: None,
            kubelet_api: KubeletApi::default(),
            event_limits: crate::events::Limits::default(),
            ignored_fields: Vec::new(),
        }
    }
}

impl Config {
    /// The cgroup parent of this agent's pods: `cgroupRoot` when set, else derived from the
    /// root dir, so that agents with different root dirs never share (and never sweep) one.
    pub fn cgroup_root(&self) -> String {
        self.cgroup_root
            .clone()
            .unwrap_or_else(|| default_cgroup_root(&self.root_dir))
    }

    /// The directory of `Localhost` seccomp profiles.
    pub fn seccomp_root(&self) -> PathBuf {
        self.seccomp_profile_root
            .clone()
            .unwrap_or_else(|| self.root_dir.join("seccomp"))
    }
}

static NODE_IP: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

/// Sets `--node-ip` for this process (the agent, once at start): pods' hostIP and the Node's
/// InternalIP are then this address instead of the host's first.
pub fn set_node_ip(ip: Option<std::net::IpAddr>) {
    if let Some(ip) = ip {
        let _ = NODE_IP.set(ip);
    }
}

/// The `--node-ip` this process runs with, if any.
pub fn node_ip() -> Option<std::net::IpAddr> {
    NODE_IP.get().copied()
}

/// The host name, lower-cased, as the kubelet names its node.
pub fn default_node_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates within it on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).to_string()
    } else {
        std::fs::read_to_string("/etc/hostname").unwrap_or_default()
    };
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

mod cgroup_root;
mod load;
use load::from_file_dir;
pub use load::load_file;
mod file;
mod flags;
mod images;
mod kubelet_api;
mod sysctls;
pub use cgroup_root::{default_cgroup_root, parse_cgroup_root};
pub use flags::{parse_header_flag, parse_labels_flag, parse_node_ip, parse_status_address};
pub use kubelet_api::{parse_address, parse_authz_mode, AuthzMode, KubeletApi};
use sysctls::check_sysctl_pattern;
pub mod network;
pub use network::NetworkConfig;

#[cfg(test)]
mod tests;
