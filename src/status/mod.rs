//! The observed-status stage: what the agent publishes after every change, read by the status
//! endpoint (and later the mirror sync) without ever blocking the event loop for long.

pub mod server;

use crate::desired::Problem;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct LogPaths {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub current: PathBuf,
    pub previous: Option<PathBuf>,
    pub running: bool,
}

/// One consistent picture of the agent's state.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub pods: Vec<Value>,
    pub problems: Vec<Problem>,
    pub start_latency: Histogram,
    pub log_paths: Vec<LogPaths>,
}

/// A fixed-size latency histogram (seconds), so memory stays flat however long it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

pub const BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Default)]
pub struct StatusBoard {
    inner: Mutex<Shared>,
}

impl StatusBoard {
    pub fn publish(&self, s: Shared) {
        if let Ok(mut g) = self.inner.lock() {
            *g = s;
        }
    }

    pub fn read(&self) -> Shared {
        self.inner.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

pub fn pod_list(s: &Shared) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": s.pods})
}

pub fn problems_json(s: &Shared) -> Value {
    json!(s
        .problems
        .iter()
        .map(|p| json!({"origin": p.origin, "pod": p.pod, "message": p.message}))
        .collect::<Vec<_>>())
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition: pods by phase, restarts, manifest errors, start latency.
pub fn metrics(s: &Shared) -> String {
    let mut out = String::new();
    out.push_str("# HELP staticlet_pods Static pods by phase.\n# TYPE staticlet_pods gauge\n");
    for phase in ["Pending", "Running", "Succeeded", "Failed"] {
        let n = s
            .pods
            .iter()
            .filter(|p| p["status"]["phase"] == phase)
            .count();
        out.push_str(&format!("staticlet_pods{{phase=\"{phase}\"}} {n}\n"));
    }
    out.push_str("# HELP staticlet_container_restarts_total Container restarts.\n# TYPE staticlet_container_restarts_total counter\n");
    for p in &s.pods {
        let (ns, name) = (
            p["metadata"]["namespace"].as_str().unwrap_or(""),
            p["metadata"]["name"].as_str().unwrap_or(""),
        );
        for key in ["initContainerStatuses", "containerStatuses"] {
            for c in p["status"][key].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "staticlet_container_restarts_total{{namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {}\n",
                    escape_label(ns),
                    escape_label(name),
                    escape_label(c["name"].as_str().unwrap_or("")),
                    c["restartCount"].as_u64().unwrap_or(0)
                ));
            }
        }
    }
    out.push_str("# HELP staticlet_manifest_errors Manifests that are currently invalid.\n# TYPE staticlet_manifest_errors gauge\n");
    out.push_str(&format!("staticlet_manifest_errors {}\n", s.problems.len()));
    out.push_str("# HELP staticlet_container_start_seconds Time from the start decision to a running container.\n# TYPE staticlet_container_start_seconds histogram\n");
    let h = &s.start_latency;
    for (i, b) in BUCKETS.iter().enumerate() {
        out.push_str(&format!(
            "staticlet_container_start_seconds_bucket{{le=\"{b}\"}} {}\n",
            h.counts[i]
        ));
    }
    out.push_str(&format!(
        "staticlet_container_start_seconds_bucket{{le=\"+Inf\"}} {}\n",
        h.count
    ));
    out.push_str(&format!(
        "staticlet_container_start_seconds_sum {}\n",
        h.sum
    ));
    out.push_str(&format!(
        "staticlet_container_start_seconds_count {}\n",
        h.count
    ));
    out
}
