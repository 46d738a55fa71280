//! The mirror diff: what to create, delete and patch, as a function of the static pods the
//! agent runs, the mirror pods the API server has, and what was last written. Pure (no I/O,
//! `now` passed in), so the rules of static-pods.md ("Mirror pods") are unit-tested here and
//! the sync only carries them out.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

pub const ANN_MIRROR: &str = "kubernetes.io/config.mirror";
pub const ANN_HASH: &str = "kubernetes.io/config.hash";

/// `(namespace, name)` of a pod; mirror and static pod share it.
pub type Key = (String, String);

pub fn key_text(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

/// A static pod that should have a mirror.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub key: Key,
    /// The static pod's UID (what the status board is keyed by).
    pub uid: String,
    /// `kubernetes.io/config.hash`, what `config.mirror` must equal.
    pub hash: String,
    pub pod: Value,
}

/// A mirror pod as the API server has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub uid: String,
    pub hash: String,
    /// `deletionTimestamp` is set: someone deleted it gracefully.
    pub deleting: bool,
}

/// The status last written to a mirror pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub mirror_uid: String,
    pub status: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    /// Its static pod is gone.
    Orphan,
    /// Its hash differs from the static pod's (the manifest changed).
    Changed,
    /// It is being deleted (an admin's graceful delete): replace it at once.
    Deleting,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Create(Key),
    Delete { key: Key, uid: String, why: Why },
    PatchStatus(Key),
}

/// The static pods that want a mirror: every pod the agent publishes, except those it is
/// stopping (their mirror goes; an edited pod's successor is already in the list).
pub fn wants(pods: &[Value]) -> Vec<Want> {
    pods.iter()
        .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
        .filter_map(|p| {
            let m = &p["metadata"];
            let hash = m["annotations"][ANN_HASH].as_str().or(m["uid"].as_str())?;
            Some(Want {
                key: (
                    m["namespace"].as_str()?.to_string(),
                    m["name"].as_str()?.to_string(),
                ),
                uid: m["uid"].as_str().unwrap_or(hash).to_string(),
                hash: hash.to_string(),
                pod: p.clone(),
            })
        })
        .collect()
}

/// A pod from the API server's list, if it is a mirror pod (has `config.mirror`).
pub fn seen(pod: &Value) -> Option<(Key, Seen)> {
    let m = &pod["metadata"];
    let hash = m["annotations"][ANN_MIRROR].as_str()?;
    let key = (
        m["namespace"].as_str()?.to_string(),
        m["name"].as_str()?.to_string(),
    );
    Some((
        key,
        Seen {
            uid: m["uid"].as_str().unwrap_or_default().to_string(),
            hash: hash.to_string(),
            deleting: m.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
        },
    ))
}

/// The mirror pod to create for a static pod: its metadata and spec, the mirror annotation,
/// and the Node as its only (controller) owner. No status, uid or resourceVersion.
pub fn mirror_body(want: &Want, node: &str, node_uid: &str) -> Value {
    let m = &want.pod["metadata"];
    let mut meta = json!({"name": want.key.1, "namespace": want.key.0});
    if m["labels"].as_object().is_some_and(|l| !l.is_empty()) {
        meta["labels"] = m["labels"].clone();
    }
    let mut ann = m["annotations"].as_object().cloned().unwrap_or_default();
    ann.insert(ANN_MIRROR.into(), json!(want.hash));
    meta["annotations"] = Value::Object(ann);
    meta["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}]);
    let mut spec = want.pod["spec"].clone();
    if let Some(s) = spec.as_object_mut() {
        s.insert("nodeName".into(), json!(node));
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The status to write: the static pod's, with each condition's `lastTransitionTime` kept
/// from what was last written while the condition's status is unchanged (the agent stamps
/// some with the current time).
pub fn status_to_write(want: &Want, last: Option<&Value>) -> Value {
    let mut status = want.pod["status"].clone();
    let old: Vec<&Value> = last
        .and_then(|l| l["conditions"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let conds = status.get_mut("conditions").and_then(Value::as_array_mut);
    for c in conds.into_iter().flatten().filter_map(Value::as_object_mut) {
        if let Some(o) = old
            .iter()
            .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"))
        {
            c.insert("lastTransitionTime".into(), o["lastTransitionTime"].clone());
        }
    }
    status
}

/// The merge patch for `pods/<name>/status`: the UID as a precondition (the server refuses
/// a patch whose `metadata.uid` differs), the new status, and `null` for the optional fields
/// it lacks so stale ones (a pod IP) are removed.
pub fn status_patch(status: &Value, mirror_uid: &str) -> Value {
    let mut s: Map<String, Value> = status.as_object().cloned().unwrap_or_default();
    for k in [
        "podIP",
        "podIPs",
        "initContainerStatuses",
        "message",
        "reason",
        "nominatedNodeName",
    ] {
        s.entry(k).or_insert(Value::Null);
    }
    json!({"metadata": {"uid": mirror_uid}, "status": s})
}

/// Two statuses (pod or node) equal apart from condition timestamps.
pub fn same_status(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(conds) = v["conditions"].as_array_mut() {
            for c in conds.iter_mut().filter_map(Value::as_object_mut) {
                for t in ["lastTransitionTime", "lastProbeTime", "lastHeartbeatTime"] {
                    c.remove(t);
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// What to do now. `held` are keys waiting for a retry (refused, or a server error).
pub fn plan(
    wants: &[Want],
    seen: &BTreeMap<Key, Seen>,
    written: &BTreeMap<Key, Written>,
    held: &dyn Fn(&Key, Instant) -> bool,
    now: Instant,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let wanted: BTreeMap<&Key, &Want> = wants.iter().map(|w| (&w.key, w)).collect();
    for (key, s) in seen {
        if !wanted.contains_key(key) && !held(key, now) {
            ops.push(Op::Delete {
                key: key.clone(),
                uid: s.uid.clone(),
                why: Why::Orphan,
            });
        }
    }
    for w in wants {
        if held(&w.key, now) {
            continue;
        }
        match seen.get(&w.key) {
            None => ops.push(Op::Create(w.key.clone())),
            Some(s) if s.hash != w.hash || s.deleting => {
                let why = if s.deleting {
                    Why::Deleting
                } else {
                    Why::Changed
                };
                ops.push(Op::Delete {
                    key: w.key.clone(),
                    uid: s.uid.clone(),
                    why,
                });
                ops.push(Op::Create(w.key.clone()));
            }
            Some(s) => {
                let fresh = written.get(&w.key).is_some_and(|x| {
                    x.mirror_uid == s.uid && same_status(&x.status, &w.pod["status"])
                });
                if !fresh {
                    ops.push(Op::PatchStatus(w.key.clone()));
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests;
