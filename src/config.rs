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

/// The KubeletConfiguration fields staticlet uses; all others are reported as ignored.
const KUBELET_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "staticPodPath",
    "staticPodURL",
    "staticPodURLHeader",
    "fileCheckFrequency",
    "httpCheckFrequency",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "systemReserved",
    "podPidsLimit",
    "runtimeRequestTimeout",
    "cgroupRoot",
    "seccompDefault",
    "allowedUnsafeSysctls",
    "podCIDR",
    "clusterDNS",
    "clusterDomain",
    "resolvConf",
    "port",
    "address",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "authentication",
    "authorization",
];

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    let parse_err = |message: String| ConfigError::Parse {
        path: path.into(),
        message,
    };
    let value: Value =
        serde_yaml::from_slice(&bytes).map_err(|e| parse_err(format!("cannot parse: {e}")))?;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut file: StaticletFile = match (api_version.as_str(), kind.as_str()) {
        (API_VERSION, KIND) => decode(value, path)?,
        (KUBELET_API_VERSION, "KubeletConfiguration") => {
            let Value::Object(mut map) = value else {
                return Err(parse_err("a KubeletConfiguration must be a mapping".into()));
            };
            let mut ignored: Vec<String> = map
                .keys()
                .filter(|k| !KUBELET_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect();
            ignored.sort();
            map.retain(|k, _| KUBELET_FIELDS.contains(&k.as_str()));
            let mut f = decode(Value::Object(map), path)?;
            f.api_version = API_VERSION.into();
            let mut config = resolve(f, path)?;
            config.ignored_fields = ignored;
            return Ok(config);
        }
        _ => {
            return Err(parse_err(format!(
                "apiVersion {api_version:?} kind {kind:?}: expected apiVersion {API_VERSION} kind {KIND}, or {KUBELET_API_VERSION} KubeletConfiguration"
            )))
        }
    };
    file.api_version = API_VERSION.into();
    resolve(file, path)
}

/// Decodes the file's keys; a value of the wrong type is reported with its field path
/// (`fileCheckFrequency`, `staticPodURLHeader.Authorization[0]`), not only serde's message.
fn decode(value: Value, path: &Path) -> Result<StaticletFile, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        if field == "." {
            ConfigError::Parse {
                path: path.into(),
                message,
            }
        } else {
            ConfigError::Invalid {
                origin: path.display().to_string(),
                field,
                message,
            }
        }
    })
}

/// Relative paths in a configuration file are taken from the file's directory, as the
/// kubelet does for its KubeletConfiguration, so the agent's working directory never matters.
fn from_file_dir(file: &Path, value: String) -> PathBuf {
    let p = PathBuf::from(value);
    if p.is_absolute() {
        return p;
    }
    let dir = file.parent().unwrap_or(Path::new(""));
    std::path::absolute(dir.join(&p)).unwrap_or_else(|_| dir.join(p))
}

fn resolve(f: StaticletFile, path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        origin: origin.clone(),
        field: field.into(),
        message,
    };
    let mut c = Config::default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if let Some(n) = non_empty(f.node_name) {
        c.node_name = n;
    }
    c.static_pod_path = non_empty(f.static_pod_path).map(|p| from_file_dir(path, p));
    c.static_pod_url = non_empty(f.static_pod_url);
    c.static_pod_url_header = f.static_pod_url_header.unwrap_or_default();
    c.manifest_url_ca_file = non_empty(f.static_pod_url_ca_file).map(|p| from_file_dir(path, p));
    c.manifest_public_keys = f
        .manifest_public_keys
        .unwrap_or_default()
        .into_iter()
        .filter(|k| !k.is_empty())
        .map(|k| from_file_dir(path, k))
        .collect();
    for (field, text, slot) in [
        (
            "fileCheckFrequency",
            f.file_check_frequency,
            &mut c.file_check_frequency,
        ),
        (
            "httpCheckFrequency",
            f.http_check_frequency,
            &mut c.http_check_frequency,
        ),
        (
            "runtimeRequestTimeout",
            f.runtime_request_timeout,
            &mut c.runtime_request_timeout,
        ),
    ] {
        if let Some(t) = non_empty(text) {
            *slot = parse_duration(&t).filter(|d| !d.is_zero()).ok_or_else(|| {
                invalid(field, format!("{t:?} is not a duration such as 20s or 1m"))
            })?;
        }
    }
    if let Some(t) = non_empty(f.rollback_after) {
        c.rollback_after = Some(parse_duration(&t).filter(|d| !d.is_zero()).ok_or_else(|| {
            invalid(
                "rollbackAfter",
                format!("{t:?} is not a duration such as 120s or 5m"),
            )
        })?);
    }
    if let Some(d) = non_empty(f.root_dir) {
        c.root_dir = from_file_dir(path, d);
    }
    if let Some(d) = non_empty(f.pod_logs_dir) {
        c.pod_logs_dir = from_file_dir(path, d);
    }
    if let Some(d) = non_empty(f.runtime_path) {
        // A bare name (`crun`) is looked up on PATH; anything with a slash is a path.
        c.runtime_path = if d.contains('/') {
            from_file_dir(path, d)
        } else {
            d.into()
        };
    }
    if let Some(a) = non_empty(f.status_address) {
        c.status_address = parse_status_address(&a).map_err(|m| invalid("statusAddress", m))?;
    }
    c.kubeconfig = non_empty(f.kubeconfig).map(|p| from_file_dir(path, p));
    c.kubeconfig_context = non_empty(f.kubeconfig_context);
    if let Some(q) = f.container_log_max_size {
        c.container_log_max_size = Quantity::parse(&q.as_text())
            .map(|q| q.value() as u64)
            .filter(|v| *v >= 1024)
            .ok_or_else(|| {
                invalid(
                    "containerLogMaxSize",
                    format!(
                        "{:?} must be a quantity of at least 1Ki, such as 10Mi",
                        q.as_text()
                    ),
                )
            })?;
    }
    if let Some(n) = f.container_log_max_files {
        if n < 1 {
            return Err(invalid("containerLogMaxFiles", "must be at least 1".into()));
        }
        c.container_log_max_files = n;
    }
    c.node_labels = f.node_labels.unwrap_or_default();
    for (res, q) in f.system_reserved.unwrap_or_default() {
        if Quantity::parse(&q.as_text()).is_none() {
            return Err(invalid(
                &format!("systemReserved[{res}]"),
                format!("{:?} must be a quantity", q.as_text()),
            ));
        }
        c.system_reserved.insert(res, q.as_text());
    }
    if let Some(d) = non_empty(f.config_dir) {
        c.config_dir = from_file_dir(path, d);
    }
    c.insecure_registries = f.insecure_registries.unwrap_or_default();
    c.image_credentials = non_empty(f.image_credentials).map(|p| from_file_dir(path, p));
    if let Some(n) = f.pod_pids_limit {
        if n == 0 || n < -1 {
            return Err(invalid(
                "podPidsLimit",
                format!("{n}: must be -1 (no limit) or a positive number"),
            ));
        }
        c.pod_pids_limit = n;
    }
    if let Some(r) = non_empty(f.cgroup_root) {
        c.cgroup_root = Some(parse_cgroup_root(&r).map_err(|m| invalid("cgroupRoot", m))?);
    }
    c.seccomp_profile_root = non_empty(f.seccomp_profile_root).map(|p| from_file_dir(path, p));
    c.seccomp_default = f.seccomp_default.unwrap_or(false);
    for (i, pattern) in f.allowed_unsafe_sysctls.iter().flatten().enumerate() {
        check_sysctl_pattern(pattern)
            .map_err(|m| invalid(&format!("allowedUnsafeSysctls[{i}]"), m))?;
        c.allowed_unsafe_sysctls.push(pattern.clone());
    }
    c.network = network::resolve(
        network::Keys {
            cni_conf_dir: f.cni_conf_dir,
            cni_bin_dir: f.cni_bin_dir,
            pod_cidr: f.pod_cidr,
            cluster_dns: f.cluster_dns,
            cluster_domain: f.cluster_domain,
            resolv_conf: f.resolv_conf,
        },
        path,
    )?;
    if let Some(ip) = non_empty(f.node_ip) {
        c.node_ip = Some(parse_node_ip(&ip).map_err(|m| invalid("nodeIP", m))?);
    }
    let api = kubelet_api::ApiFields {
        port: f.port,
        address: f.address,
        tls_cert_file: f.tls_cert_file,
        tls_private_key_file: f.tls_private_key_file,
        authentication: f.authentication,
        authorization: f.authorization,
    };
    c.kubelet_api =
        kubelet_api::resolve(api, |p| from_file_dir(path, p)).map_err(|(f, m)| invalid(&f, m))?;
    c.event_limits = kubelet_api::event_limits(f.event_buffer_max_events, f.event_buffer_max_bytes)
        .map_err(|(f, m)| invalid(&f, m))?;
    Ok(c)
}

mod cgroup_root;
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
