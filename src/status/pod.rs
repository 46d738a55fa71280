//! The contract between the agent and its readers: each pod as the kubelet would report
//! it, typed. The agent publishes these on the board; they become JSON (a `v1` Pod with
//! its `status`) only where JSON leaves the process: the status endpoint and the mirror
//! sync ([`PodStatus::to_json`]).

use crate::manifest::StaticPod;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// A pod and its observed status.
#[derive(Debug, Clone, PartialEq)]
pub struct PodStatus {
    /// The manifest with the static-pod defaults, shared with the agent (not copied).
    pub pod: Arc<StaticPod>,
    /// Set while the pod is being stopped and removed.
    pub deletion_timestamp: Option<String>,
    pub status: Status,
}

impl PodStatus {
    pub fn uid(&self) -> &str {
        self.pod.uid()
    }

    /// The `v1` Pod: the manifest, its deletion timestamp, and the status.
    pub fn to_json(&self) -> Value {
        let mut pod = self.pod.raw.clone();
        pod["status"] = serde_json::to_value(&self.status).unwrap_or(Value::Null);
        if let Some(t) = &self.deletion_timestamp {
            pod["metadata"]["deletionTimestamp"] = Value::String(t.clone());
        }
        pod
    }
}

/// The pod's phase, by the kubelet's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub phase: Phase,
    /// Why the pod is in its phase, when the kubelet says (`DeadlineExceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub conditions: Vec<Condition>,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    #[serde(rename = "podIP", skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    #[serde(rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    pub start_time: String,
    pub qos_class: &'static str,
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The kubelet writes `null` on its own conditions; ours of staticlet leave it out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Option<String>>,
    pub last_transition_time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    pub ready: bool,
    pub started: bool,
    pub restart_count: u32,
    pub state: ContainerState,
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<LastState>,
}

/// A container's state, as `{"waiting": ...}`, `{"running": ...}` or `{"terminated": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    Waiting {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Running {
        #[serde(rename = "startedAt")]
        started_at: String,
    },
    Terminated(TerminatedState),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastState {
    pub terminated: TerminatedState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminatedState {
    pub exit_code: i32,
    pub reason: String,
    pub finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The JSON is exactly the kubelet's shape: optional fields left out, not null, and the
    /// kubelet's own conditions with `lastProbeTime: null`.
    #[test]
    fn a_pod_status_becomes_the_v1_pod_json() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  containers:\n  - {name: c, image: busybox}\n";
        let source = crate::manifest::Source::File("/m/p.yaml".into());
        let pod = crate::manifest::load(yaml.as_bytes(), &source, "n").unwrap();
        let done = TerminatedState {
            exit_code: 1,
            reason: "Error".into(),
            finished_at: "t1".into(),
            signal: None,
            message: None,
            started_at: Some("t0".into()),
        };
        let p = PodStatus {
            pod: Arc::new(pod),
            deletion_timestamp: Some("t2".into()),
            status: Status {
                phase: Phase::Running,
                reason: None,
                message: None,
                conditions: vec![Condition {
                    kind: "Ready".into(),
                    status: "False",
                    reason: None,
                    message: None,
                    last_probe_time: Some(None),
                    last_transition_time: "t0".into(),
                }],
                host_ip: "192.0.2.1".into(),
                pod_ip: String::new(),
                pod_ips: Vec::new(),
                start_time: "t0".into(),
                qos_class: "BestEffort",
                container_statuses: vec![ContainerStatus {
                    name: "c".into(),
                    image: "busybox".into(),
                    image_id: String::new(),
                    ready: false,
                    started: false,
                    restart_count: 1,
                    state: ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: None,
                    },
                    container_id: None,
                    last_state: Some(LastState { terminated: done }),
                }],
                init_container_statuses: Vec::new(),
            },
        };
        let v = p.to_json();
        assert_eq!(v["metadata"]["name"], "p-n");
        assert_eq!(v["metadata"]["deletionTimestamp"], "t2");
        assert_eq!(
            v["status"],
            json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False", "lastProbeTime": null, "lastTransitionTime": "t0"}],
                "hostIP": "192.0.2.1",
                "startTime": "t0",
                "qosClass": "BestEffort",
                "containerStatuses": [{
                    "name": "c", "image": "busybox", "imageID": "", "ready": false, "started": false,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "t1", "startedAt": "t0"}},
                }],
            })
        );
    }
}
