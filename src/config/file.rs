//! The configuration file as written: every key optional, unknown keys refused (a typo must
//! not silently change behaviour). [`super::load_file`] turns it into a `Config`.

use crate::manifest::pod::QuantityValue;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Our own kind. Every field is optional; unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct StaticletFile {
    pub(super) api_version: String,
    #[serde(rename = "kind")]
    pub(super) _kind: String,
    pub(super) node_name: Option<String>,
    pub(super) static_pod_path: Option<String>,
    #[serde(rename = "staticPodURL")]
    pub(super) static_pod_url: Option<String>,
    #[serde(rename = "staticPodURLHeader")]
    pub(super) static_pod_url_header: Option<BTreeMap<String, Vec<String>>>,
    #[serde(rename = "staticPodURLCAFile")]
    pub(super) static_pod_url_ca_file: Option<String>,
    pub(super) manifest_public_keys: Option<Vec<String>>,
    pub(super) file_check_frequency: Option<String>,
    pub(super) http_check_frequency: Option<String>,
    pub(super) root_dir: Option<String>,
    pub(super) pod_logs_dir: Option<String>,
    pub(super) runtime_path: Option<String>,
    pub(super) status_address: Option<String>,
    pub(super) kubeconfig: Option<String>,
    pub(super) kubeconfig_context: Option<String>,
    pub(super) container_log_max_size: Option<QuantityValue>,
    pub(super) container_log_max_files: Option<u32>,
    pub(super) node_labels: Option<BTreeMap<String, String>>,
    pub(super) system_reserved: Option<BTreeMap<String, QuantityValue>>,
    pub(super) config_dir: Option<String>,
    pub(super) insecure_registries: Option<Vec<String>>,
    pub(super) image_credentials: Option<String>,
    pub(super) pod_pids_limit: Option<i64>,
    pub(super) runtime_request_timeout: Option<String>,
    pub(super) rollback_after: Option<String>,
    pub(super) cgroup_root: Option<String>,
    pub(super) seccomp_profile_root: Option<String>,
    pub(super) seccomp_default: Option<bool>,
    pub(super) allowed_unsafe_sysctls: Option<Vec<String>>,
    pub(super) cni_conf_dir: Option<String>,
    pub(super) cni_bin_dir: Option<super::network::Dirs>,
    #[serde(rename = "podCIDR")]
    pub(super) pod_cidr: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub(super) cluster_dns: Option<Vec<String>>,
    pub(super) cluster_domain: Option<String>,
    pub(super) resolv_conf: Option<String>,
    #[serde(rename = "nodeIP")]
    pub(super) node_ip: Option<String>,
    pub(super) port: Option<i64>,
    pub(super) address: Option<String>,
    pub(super) tls_cert_file: Option<String>,
    pub(super) tls_private_key_file: Option<String>,
    pub(super) authentication: Option<super::kubelet_api::AuthnFile>,
    pub(super) authorization: Option<super::kubelet_api::AuthzFile>,
    pub(super) event_buffer_max_events: Option<u64>,
    pub(super) event_buffer_max_bytes: Option<QuantityValue>,
}
