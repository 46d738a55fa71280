//! The subset of the Kubernetes `v1.Pod` that staticlet reads.
//!
//! Unknown fields are ignored, as the kubelet does, so the same file works on both. Fields
//! that static pods may not use (secrets, config maps, claims, ...) are kept as opaque
//! values so that validation can name them instead of silently dropping them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub ephemeral_containers: Option<Value>,
    pub volumes: Vec<Volume>,
    pub restart_policy: Option<String>,
    pub termination_grace_period_seconds: Option<i64>,
    pub host_network: bool,
    #[serde(rename = "hostPID")]
    pub host_pid: bool,
    #[serde(rename = "hostIPC")]
    pub host_ipc: bool,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    pub host_aliases: Vec<HostAlias>,
    pub dns_policy: Option<String>,
    pub dns_config: Option<DnsConfig>,
    pub security_context: Option<PodSecurityContext>,
    pub service_account_name: Option<String>,
    pub service_account: Option<String>,
    pub automount_service_account_token: Option<bool>,
    pub node_name: Option<String>,
    pub active_deadline_seconds: Option<i64>,
    pub share_process_namespace: Option<bool>,
    pub host_users: Option<bool>,
    pub readiness_gates: Option<Value>,
    pub runtime_class_name: Option<String>,
    pub os: Option<PodOs>,
    pub resource_claims: Option<Value>,
    pub resources: Option<Value>,
    pub hostname_override: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodOs {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub supplemental_groups: Vec<i64>,
    pub supplemental_groups_policy: Option<String>,
    pub fs_group: Option<i64>,
    pub fs_group_change_policy: Option<String>,
    pub sysctls: Vec<Sysctl>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub app_armor_profile: Option<AppArmorProfile>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeccompProfile {
    #[serde(rename = "type")]
    pub kind: String,
    pub localhost_profile: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppArmorProfile {
    #[serde(rename = "type")]
    pub kind: String,
    pub localhost_profile: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub env: Vec<EnvVar>,
    pub env_from: Vec<EnvFromSource>,
    pub ports: Vec<ContainerPort>,
    pub resources: Resources,
    pub volume_mounts: Vec<VolumeMount>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
    pub lifecycle: Option<Lifecycle>,
    pub image_pull_policy: Option<String>,
    pub security_context: Option<SecurityContext>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Only init containers may set it (`Always`: a native sidecar).
    pub restart_policy: Option<String>,
    pub restart_policy_rules: Option<Value>,
    pub volume_devices: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarSource {
    pub field_ref: Option<FieldRef>,
    pub resource_field_ref: Option<ResourceFieldRef>,
    pub secret_key_ref: Option<Value>,
    pub config_map_key_ref: Option<Value>,
    pub file_key_ref: Option<Value>,
}

/// `env[].valueFrom.resourceFieldRef`: a container's limit or request, divided by `divisor`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceFieldRef {
    pub container_name: Option<String>,
    pub resource: String,
    pub divisor: Option<QuantityValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldRef {
    pub field_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvFromSource {
    pub secret_ref: Option<Value>,
    pub config_map_ref: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: i64,
    pub host_port: Option<i64>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Resources {
    pub limits: BTreeMap<String, QuantityValue>,
    pub requests: BTreeMap<String, QuantityValue>,
    pub claims: Option<Value>,
}

/// A quantity as written: YAML lets users write `cpu: 1` or `cpu: "1"`; both are valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuantityValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl QuantityValue {
    pub fn as_text(&self) -> String {
        match self {
            QuantityValue::Int(i) => i.to_string(),
            QuantityValue::Float(f) => f.to_string(),
            QuantityValue::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub read_only: bool,
    pub sub_path: Option<String>,
    pub sub_path_expr: Option<String>,
    pub mount_propagation: Option<String>,
    pub recursive_read_only: Option<String>,
}

/// A port given as a number or as the name of a container port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpGetAction {
    pub path: Option<String>,
    pub port: IntOrString,
    pub host: Option<String>,
    pub scheme: Option<String>,
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    pub host: Option<String>,
}

/// What a probe or a lifecycle hook runs; exactly one of the actions must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Handler {
    pub exec: Option<ExecAction>,
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub grpc: Option<Value>,
    pub sleep: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    #[serde(flatten)]
    pub handler: Handler,
    pub initial_delay_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub success_threshold: Option<i64>,
    pub termination_grace_period_seconds: Option<i64>,
}

impl Probe {
    pub fn initial_delay(&self) -> i64 {
        self.initial_delay_seconds.unwrap_or(0)
    }
    pub fn period(&self) -> i64 {
        self.period_seconds.unwrap_or(10)
    }
    pub fn timeout(&self) -> i64 {
        self.timeout_seconds.unwrap_or(1)
    }
    pub fn failure_threshold(&self) -> i64 {
        self.failure_threshold.unwrap_or(3)
    }
    pub fn success_threshold(&self) -> i64 {
        self.success_threshold.unwrap_or(1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lifecycle {
    pub pre_stop: Option<Handler>,
    pub post_start: Option<Handler>,
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub privileged: Option<bool>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub run_as_non_root: Option<bool>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub app_armor_profile: Option<AppArmorProfile>,
    pub proc_mount: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// A volume: staticlet runs `hostPath` and `emptyDir`; every other source is kept opaque so
/// that validation can name it (forbidden for static pods, or not supported here).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    pub host_path: Option<HostPathVolume>,
    pub empty_dir: Option<EmptyDirVolume>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HostPathVolume {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmptyDirVolume {
    pub medium: Option<String>,
    pub size_limit: Option<QuantityValue>,
}

impl Container {
    pub fn pull_policy(&self) -> super::PullPolicy {
        match self
            .image_pull_policy
            .as_deref()
            .and_then(super::PullPolicy::parse)
        {
            Some(p) => p,
            // The kubelet's default: `Always` for `:latest` or untagged images.
            None if crate::image::Reference::parse(&self.image)
                .map(|r| r.is_latest())
                .unwrap_or(false) =>
            {
                super::PullPolicy::Always
            }
            None => super::PullPolicy::IfNotPresent,
        }
    }
}

impl PodSpec {
    pub fn restart_policy(&self) -> super::RestartPolicy {
        super::RestartPolicy::parse(self.restart_policy.as_deref())
    }
    pub fn grace_period_seconds(&self) -> i64 {
        self.termination_grace_period_seconds.unwrap_or(30)
    }
}
