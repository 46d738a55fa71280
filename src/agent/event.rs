//! Kubernetes Events as the core records them (Pulled, Created, Started, Killing, BackOff,
//! Unhealthy, Failed, FailedMount...), with the kubelet's reasons and messages, and the
//! tiny trait the shell hands them to. The default sink only logs them at debug level; a
//! store that keeps them through outages and posts them for the mirror pods implements the
//! same trait.

use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// The pod an event is about (the mirror pod shares its namespace and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pod: PodRef,
    /// The container it concerns, if any (the kubelet's `involvedObject.fieldPath`).
    pub container: Option<String>,
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
    /// When it happened.
    pub time: SystemTime,
}

/// Where the shell hands every event. Must not block: the event loop calls it.
pub trait EventSink {
    fn record(&self, event: Event);
}

/// The default sink: one debug line per event.
pub struct LogSink;

impl EventSink for LogSink {
    fn record(&self, e: Event) {
        let what = match &e.container {
            Some(c) => format!("{}/{}/{c}", e.pod.namespace, e.pod.name),
            None => format!("{}/{}", e.pod.namespace, e.pod.name),
        };
        log::debug!("event {:?} {} {what}: {}", e.kind, e.reason, e.message);
    }
}
