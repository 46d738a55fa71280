//! Events: what happened to each pod (pulled, created, started, killing, back-off, probe
//! failures...), recorded as the kubelet's event recorder records them, shown by
//! `staticlet describe pod` and posted to the API server as `v1` Events on the mirror pods.
//!
//! The pod path only calls [`EventSink::record`], which appends to memory under a short lock
//! and wakes the poster: it never waits for the disk or the network. The poster (the mirror
//! sync thread) posts pending events in order with their original timestamps, and keeps the
//! buffer on disk while it cannot ([`Recorder::persist`]), so events that happen while the
//! uplink is down reach the cluster when it returns, even across an agent restart. The buffer
//! is bounded by count and bytes; the oldest go first and are counted (see [`store`]).

pub mod kubelet;
pub mod store;
pub mod wire;

pub use store::{Entry, Limits, Saved, Store};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Type {
    Normal,
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Pod,
    Node,
}

/// What an event is about: a static pod (its UID is the static pod's; the poster puts the
/// mirror pod's in its place) and optionally one of its containers, or the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.containers{name}` or `spec.initContainers{name}`, as the kubelet sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

impl Subject {
    pub fn pod(namespace: &str, name: &str, uid: &str) -> Subject {
        Subject {
            kind: Kind::Pod,
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            field_path: None,
        }
    }

    /// The kubelet's node reference: namespace `default`, the node's name as its UID.
    pub fn node(node: &str) -> Subject {
        Subject {
            kind: Kind::Node,
            namespace: "default".into(),
            name: node.into(),
            uid: node.into(),
            field_path: None,
        }
    }

    pub fn container(mut self, name: &str, init: bool) -> Subject {
        let list = if init { "initContainers" } else { "containers" };
        self.field_path = Some(format!("spec.{list}{{{name}}}"));
        self
    }
}

/// One occurrence of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub subject: Subject,
    pub kind: Type,
    pub reason: String,
    pub message: String,
    pub at: SystemTime,
}

/// Where the pod path records events. Implementations must return at once.
pub trait EventSink: Send + Sync {
    fn record(&self, event: Event);

    fn record_all(&self, events: Vec<Event>) {
        for e in events {
            self.record(e);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("saving events to {}: {source}", path.display())]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The file the buffer is kept in while events wait for the API server.
pub fn buffer_path(root_dir: &Path) -> PathBuf {
    root_dir.join("events.json")
}

/// The agent's event sink: the buffer, the file it is kept in, and whom to wake.
pub struct Recorder {
    store: Mutex<Store>,
    path: Option<PathBuf>,
    wake: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// (generation saved last, whether that save held pending events).
    saved: Mutex<(u64, bool)>,
}

impl Recorder {
    /// An in-memory recorder (tests, and agents without an API server when `path` is None).
    pub fn new(limits: Limits, posting: bool, node: &str, path: Option<PathBuf>) -> Recorder {
        Recorder {
            store: Mutex::new(Store::new(limits, posting, node)),
            path,
            wake: Mutex::new(None),
            saved: Mutex::new((0, false)),
        }
    }

    /// The agent's recorder: events are posted when there is a kubeconfig, and what the last
    /// run could not post is taken back from `<rootDir>/events.json`.
    pub fn open(root_dir: &Path, node: &str, limits: Limits, posting: bool) -> Recorder {
        let path = buffer_path(root_dir);
        let r = Recorder::new(limits, posting, node, posting.then(|| path.clone()));
        match load(&path) {
            Ok(Some(saved)) if posting => {
                let n = saved.entries.iter().filter(|e| e.pending()).count();
                if n > 0 {
                    log::info!(
                        "{} event(s) not posted by the last run are taken from {}",
                        n,
                        path.display()
                    );
                }
                let mut s = r.lock();
                s.restore(saved);
                let generation = s.generation;
                drop(s);
                if let Ok(mut g) = r.saved.lock() {
                    *g = (generation, n > 0);
                }
            }
            Ok(_) => {}
            Err(m) => log::warn!("{}: {m}; starting with no saved events", path.display()),
        }
        r
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pod is gone: its posted events are forgotten (see [`Store::forget_pod`]).
    pub fn forget_pod(&self, uid: &str) {
        self.lock().forget_pod(uid);
    }

    /// Who to wake when an event is recorded (the poster).
    pub fn on_record(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(wake);
        }
    }

    /// A copy of the entries (oldest first) and the dropped count, for `describe`.
    pub fn snapshot(&self) -> Saved {
        self.lock().saved()
    }

    /// Whether the file is out of date (it should hold events the API server does not have,
    /// or it holds some that it now has), and whether any are pending.
    pub fn save_state(&self) -> (bool, bool) {
        if self.path.is_none() {
            return (false, false);
        }
        let (generation, pending) = {
            let s = self.lock();
            (s.generation, s.pending_count() > 0)
        };
        let last = self
            .saved
            .lock()
            .map(|g| *g)
            .unwrap_or((generation, pending));
        (last.0 != generation && (pending || last.1), pending)
    }

    /// Writes the buffer to disk (atomically) when [`Recorder::save_state`] says it is out
    /// of date; removes the file when nothing is pending any more. Called by the poster,
    /// never on the pod path.
    pub fn persist(&self) -> Result<(), EventsError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let (generation, pending, saved) = {
            let s = self.lock();
            (s.generation, s.pending_count() > 0, s.saved())
        };
        let Ok(mut last) = self.saved.lock() else {
            return Ok(());
        };
        if last.0 == generation || (!pending && !last.1) {
            return Ok(());
        }
        let result = if pending {
            let text = serde_json::to_vec(&saved).unwrap_or_default();
            crate::sys::fsutil::write_atomic(path, &text)
        } else {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        result.map_err(|source| EventsError::Save {
            path: path.clone(),
            source,
        })?;
        *last = (generation, pending);
        Ok(())
    }
}

impl EventSink for Recorder {
    fn record(&self, event: Event) {
        log::debug!(
            "event {:?} {} {}: {}",
            event.kind,
            event.reason,
            event.subject.name,
            event.message
        );
        let dropped = self.lock().record(event);
        if dropped > 0 {
            log::warn!("event buffer full: dropped the {dropped} oldest event(s) not yet posted");
        }
        let wake = self.wake.lock().ok().and_then(|w| w.clone());
        if let Some(w) = wake {
            w();
        }
    }
}

/// The saved buffer, if any; an unreadable or damaged file is an error to log, never fatal.
fn load(path: &Path) -> Result<Option<Saved>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    // Our own file, but bounded anyway: the buffer's byte limit is far below this.
    let mut text = Vec::new();
    file.take(64 * 1024 * 1024)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("not a saved event buffer: {e}"))
}
