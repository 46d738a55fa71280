//! What the cluster tests share: an agent pointed at the test's kube-apiserver (node client
//! certificate, the kubelet API on a port of its own, `--node-ip 127.0.0.1` so the API server
//! reaches it on loopback) and ways to wait for its Events. Included with `#[path]`.

use crate::apiserver::Cluster;
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// kube-apiserver flags to reach kubelets: its client certificate (CN
/// kube-apiserver-kubelet-client, O system:masters) and the node's InternalIP.
pub fn kubelet_client(dir: &Path) -> Vec<String> {
    vec![
        format!(
            "--kubelet-client-certificate={}",
            dir.join("kubelet-client.crt").display()
        ),
        format!(
            "--kubelet-client-key={}",
            dir.join("kubelet-client.key").display()
        ),
        "--kubelet-preferred-address-types=InternalIP".into(),
    ]
}

/// An agent with the node's client certificate, the kubelet API on a port of its own and
/// `--node-ip 127.0.0.1`, so the API server reaches it on loopback.
pub fn agent(api: &Cluster, tag: &str, extra: &[String]) -> (Agent, u16) {
    let port = free_port();
    let mut a = Agent::new(tag);
    a.extra_args = vec![
        "--kubeconfig".into(),
        api.kubeconfig("cert"),
        "--node-ip".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.to_string(),
        "--client-ca-file".into(),
        api.dir.join("ca.crt").display().to_string(),
    ];
    a.extra_args.extend(extra.iter().cloned());
    a.start();
    (a, port)
}

pub fn mirror_uid(api: &Cluster, name: &str) -> String {
    api.mirror("default", name)
        .and_then(|m| m["metadata"]["uid"].as_str().map(String::from))
        .unwrap_or_default()
}

pub fn find<'a>(events: &'a [Value], reason: &str, message: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["reason"] == reason && e["message"].as_str().unwrap_or("").contains(message))
}

pub fn wait_event(
    api: &Cluster,
    a: &Agent,
    object: &str,
    reason: &str,
    message: &str,
    min_count: u64,
) -> Value {
    wait_until(
        &format!(
            "event {reason} {message:?} (count >= {min_count}) of {object}; have {:#?}\n{}",
            api.events_of(object)
                .iter()
                .map(|e| format!("{} {} x{}", e["reason"], e["message"], e["count"]))
                .collect::<Vec<_>>(),
            a.agent_log()
        ),
        Duration::from_secs(60),
        || {
            find(&api.events_of(object), reason, message)
                .filter(|e| e["count"].as_u64().unwrap_or(0) >= min_count)
                .cloned()
        },
    )
}

pub fn image_pod(name: &str, image: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: {command}\n"
    )
}
