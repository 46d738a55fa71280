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
    /// Whether that container is an init container (`spec.initContainers{name}`).
    pub init_container: bool,
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
    /// When it happened.
    pub time: SystemTime,
}

/// Where the shell hands every event. Must not block: the event loop calls it.
pub trait EventSink {
    fn record(&self, event: Event);

    /// The pod is gone: what is kept about its events may go too.
    fn forget_pod(&self, _uid: &str) {}
}

/// The events store ([`crate::events`]): kept through outages, shown by `describe`, posted
/// for the mirror pods.
pub struct RecorderSink(pub std::sync::Arc<crate::events::Recorder>);

impl EventSink for RecorderSink {
    fn record(&self, e: Event) {
        let mut subject = crate::events::Subject::pod(&e.pod.namespace, &e.pod.name, &e.pod.uid);
        if let Some(c) = &e.container {
            subject = subject.container(c, e.init_container);
        }
        crate::events::EventSink::record(
            &*self.0,
            crate::events::Event {
                subject,
                kind: match e.kind {
                    EventKind::Normal => crate::events::Type::Normal,
                    EventKind::Warning => crate::events::Type::Warning,
                },
                reason: e.reason.to_string(),
                message: e.message,
                at: e.time,
            },
        );
    }

    fn forget_pod(&self, uid: &str) {
        self.0.forget_pod(uid);
    }
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
