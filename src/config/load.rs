//! Reading a configuration file: our own kind, strictly, or a kubelet's
//! `KubeletConfiguration` for the fields we share; then every key resolved into a [`Config`].

use super::*;

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
pub(super) fn from_file_dir(file: &Path, value: String) -> PathBuf {
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
