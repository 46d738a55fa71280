//! Entries as the API server takes them: a `v1` Event to create, and the merge patch that
//! updates its count, last timestamp and message when it repeats (what client-go's event
//! sink patches). Pure.

use super::{Entry, Kind, Type};
use serde_json::{json, Value};

/// The kubelet's event source component: tools that select `source=kubelet` see these.
pub const COMPONENT: &str = "kubelet";

/// The Event object for `entry`; `involved_uid` is the mirror pod's UID when there is one.
pub fn event_object(entry: &Entry, node: &str, involved_uid: &str) -> Value {
    let s = &entry.subject;
    let mut involved = json!({
        "kind": match s.kind { Kind::Pod => "Pod", Kind::Node => "Node" },
        "name": s.name,
        "uid": involved_uid,
        "apiVersion": "v1",
    });
    if s.kind == Kind::Pod {
        involved["namespace"] = json!(s.namespace);
    }
    if let Some(f) = &s.field_path {
        involved["fieldPath"] = json!(f);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": entry.name, "namespace": s.namespace},
        "involvedObject": involved,
        "reason": entry.reason,
        "message": entry.message,
        "source": {"component": COMPONENT, "host": node},
        "firstTimestamp": entry.first,
        "lastTimestamp": entry.last,
        "count": entry.count,
        "type": type_name(entry.kind),
    })
}

pub fn type_name(t: Type) -> &'static str {
    match t {
        Type::Normal => "Normal",
        Type::Warning => "Warning",
    }
}

/// The merge patch for an Event the API server already has.
pub fn repeat_patch(entry: &Entry) -> Value {
    json!({"count": entry.count, "lastTimestamp": entry.last, "message": entry.message})
}

/// `POST` path for an entry's namespace, and the object path for a patch.
pub fn paths(entry: &Entry) -> (String, String) {
    let dir = format!("/api/v1/namespaces/{}/events", entry.subject.namespace);
    let object = format!("{dir}/{}", entry.name);
    (dir, object)
}
