//! The observed-status stage: what the agent publishes after every change, read by the status
//! endpoint (and later the mirror sync) without ever blocking the event loop for long.

mod follow;
pub(crate) mod io;
mod logs;
pub mod pod;
pub(crate) mod routes;
pub mod server;
pub(crate) mod watch;

use crate::desired::Problem;
pub use pod::PodStatus;
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
    pub pods: Vec<PodStatus>,
    pub problems: Vec<Problem>,
    pub start_latency: Histogram,
    pub log_paths: Vec<LogPaths>,
    /// Candidates rolled back since the agent started (the health-gated rollback).
    pub rollbacks: u64,
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

/// Where a static pod's mirror pod stands in the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorState {
    /// The mirror pod exists, matches, and its status is current.
    Synced,
    /// Not yet created or updated (API server unreachable, waiting for the Node...).
    Pending(String),
    /// The API server refused it (admission, validation); the message is the server's.
    Refused(String),
}

/// The agent publishes here after every change; readers (the status endpoint, the mirror
/// sync) take a copy or wait for the next version. Writers never wait for readers.
#[derive(Default)]
pub struct StatusBoard {
    inner: Mutex<(u64, Shared)>,
    changed: std::sync::Condvar,
    /// The same signal for async readers (log followers) that must not block a thread.
    published: event_listener::Event,
    mirrors: Mutex<std::collections::BTreeMap<String, MirrorState>>,
    /// Wake-ups of `wait_newer` callers without a new version (see [`StatusBoard::poke`]).
    pokes: std::sync::atomic::AtomicU64,
}

impl StatusBoard {
    pub fn publish(&self, s: Shared) {
        if let Ok(mut g) = self.inner.lock() {
            g.0 += 1;
            g.1 = s;
        }
        self.changed.notify_all();
        self.published.notify(usize::MAX);
    }

    /// A listener woken by the next publish; take it before looking, so no change is missed.
    pub fn listen(&self) -> event_listener::EventListener {
        self.published.listen()
    }

    /// Looks at the current state without copying it.
    pub fn inspect<T>(&self, f: impl FnOnce(&Shared) -> T) -> T {
        match self.inner.lock() {
            Ok(g) => f(&g.1),
            Err(e) => f(&e.into_inner().1),
        }
    }

    pub fn read(&self) -> Shared {
        self.inner.lock().map(|g| g.1.clone()).unwrap_or_default()
    }

    /// Blocks until a version newer than `seen` is published, or `timeout` passes; returns
    /// the current version and state either way.
    pub fn wait_newer(&self, seen: u64, timeout: std::time::Duration) -> (u64, Shared) {
        use std::sync::atomic::Ordering;
        let Ok(g) = self.inner.lock() else {
            return (seen, Shared::default());
        };
        let pokes = self.pokes.load(Ordering::SeqCst);
        let g = match self.changed.wait_timeout_while(g, timeout, |g| {
            g.0 <= seen && self.pokes.load(Ordering::SeqCst) == pokes
        }) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
        (g.0, g.1.clone())
    }

    /// Wakes `wait_newer` callers although nothing new is published (the mirror sync, for a
    /// watch event or an event to post).
    pub fn poke(&self) {
        self.pokes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Taken so that a reader between its check and its wait cannot miss the wake-up.
        drop(self.inner.lock());
        self.changed.notify_all();
    }

    /// Records the mirror state of a pod (by UID); `None` forgets it.
    pub fn set_mirror(&self, uid: &str, state: Option<MirrorState>) {
        if let Ok(mut m) = self.mirrors.lock() {
            match state {
                Some(s) => m.insert(uid.to_string(), s),
                None => m.remove(uid),
            };
        }
    }

    pub fn mirrors(&self) -> std::collections::BTreeMap<String, MirrorState> {
        self.mirrors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The pods as the endpoint serves them: with a `staticlet.dev/MirrorSynced` condition
    /// on each pod the mirror sync has reported on.
    pub fn pods_with_mirrors(&self) -> Vec<Value> {
        let mut pods: Vec<Value> =
            self.inspect(|s| s.pods.iter().map(PodStatus::to_json).collect());
        let mirrors = self.mirrors();
        for p in &mut pods {
            let Some(state) = p["metadata"]["uid"].as_str().and_then(|u| mirrors.get(u)) else {
                continue;
            };
            let (status, reason, message) = match state {
                MirrorState::Synced => ("True", "Synced", String::new()),
                MirrorState::Pending(m) => ("Unknown", "Pending", m.clone()),
                MirrorState::Refused(m) => ("False", "Refused", m.clone()),
            };
            if let Some(conds) = p["status"]["conditions"].as_array_mut() {
                conds.push(json!({"type": "staticlet.dev/MirrorSynced", "status": status, "reason": reason, "message": message}));
            }
        }
        pods
    }
}

pub fn pod_list(pods: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})
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
    for phase in pod::Phase::ALL {
        let n = s.pods.iter().filter(|p| p.status.phase == phase).count();
        out.push_str(&format!(
            "staticlet_pods{{phase=\"{}\"}} {n}\n",
            phase.as_str()
        ));
    }
    out.push_str("# HELP staticlet_container_restarts_total Container restarts.\n# TYPE staticlet_container_restarts_total counter\n");
    for p in &s.pods {
        let (ns, name) = (p.pod.namespace(), p.pod.name());
        let st = &p.status;
        for c in st
            .init_container_statuses
            .iter()
            .chain(&st.container_statuses)
        {
            out.push_str(&format!(
                "staticlet_container_restarts_total{{namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {}\n",
                escape_label(ns),
                escape_label(name),
                escape_label(&c.name),
                c.restart_count
            ));
        }
    }
    out.push_str("# HELP staticlet_manifest_errors Manifests that are currently invalid.\n# TYPE staticlet_manifest_errors gauge\n");
    out.push_str(&format!("staticlet_manifest_errors {}\n", s.problems.len()));
    out.push_str("# HELP staticlet_manifest_signature_refusals_total Manifests refused for a missing or bad signature (manifestPublicKeys).\n# TYPE staticlet_manifest_signature_refusals_total counter\n");
    out.push_str(&format!(
        "staticlet_manifest_signature_refusals_total {}\n",
        crate::source::trust::refused_total()
    ));
    out.push_str("# HELP staticlet_rollbacks_total Changed manifests rolled back to their last good version (failed their trial).\n# TYPE staticlet_rollbacks_total counter\n");
    out.push_str(&format!("staticlet_rollbacks_total {}\n", s.rollbacks));
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
