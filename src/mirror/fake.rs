//! An in-memory API server for the sync's unit tests: the handful of routes staticlet uses,
//! with the answers the real v1.20 server gives (codes, reasons, the UID precondition,
//! namespaces that must exist, label prefixes NodeRestriction refuses, graceful deletes that
//! leave a pod Terminating). The e2e tests run the real kube-apiserver.

use super::api::{Api, ApiError, Method, Reply, WatchMsg, WatchTx};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Default)]
pub struct State {
    pub down: bool,
    pub namespaces: BTreeSet<String>,
    pub nodes: BTreeMap<String, Value>,
    pub leases: BTreeMap<String, Value>,
    pub pods: BTreeMap<(String, String), Value>,
    /// `METHOD path` of every call that reached the server.
    pub calls: Vec<String>,
    pub forbidden_label_prefix: Option<String>,
    /// Events by (namespace, name).
    pub events: BTreeMap<(String, String), Value>,
    /// Open pod watches: each change of a pod is sent to them.
    pub watchers: Vec<WatchTx>,
    serial: u64,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<State>>);

impl Fake {
    pub fn new() -> Fake {
        let f = Fake::default();
        f.lock()
            .namespaces
            .extend(["default".to_string(), "kube-node-lease".to_string()]);
        f
    }
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// An admin's `kubectl delete pod` (graceful: the pod stays, Terminating).
    pub fn admin_delete(&self, ns: &str, name: &str) {
        let mut s = self.lock();
        let changed = s.pods.get_mut(&(ns.into(), name.into())).map(|p| {
            p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            p.clone()
        });
        if let Some(p) = changed {
            s.notify("MODIFIED", p);
        }
    }
    /// `kubectl delete pod --grace-period=0 --force`: gone at once.
    pub fn admin_remove(&self, ns: &str, name: &str) {
        let mut s = self.lock();
        if let Some(p) = s.pods.remove(&(ns.into(), name.into())) {
            s.notify("DELETED", p);
        }
    }
    /// The watch cache moved past the watches' resource version: they end with 410.
    pub fn expire_watches(&self) {
        for w in std::mem::take(&mut self.lock().watchers) {
            let _ = w.tx.send(WatchMsg::Gone);
        }
    }
}

fn status(code: u16, reason: &str, message: String, kind: Option<&str>) -> Reply {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(k) = kind {
        body["details"] = json!({"kind": k});
    }
    Reply { code, body }
}

fn ok(code: u16, body: &Value) -> Reply {
    Reply {
        code,
        body: body.clone(),
    }
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if v.is_null() {
            if let Some(t) = target.as_object_mut() {
                t.remove(k);
            }
        } else {
            merge(&mut target[k], v);
        }
    }
}

impl State {
    fn notify(&mut self, kind: &str, object: Value) {
        self.watchers.retain(|w| {
            w.tx.send(WatchMsg::Event {
                kind: kind.into(),
                object: object.clone(),
            })
            .is_ok()
        });
    }

    /// A POST of a new object into `map` (picked from the server): 409 when `key` exists.
    fn create<K: Ord>(
        &mut self,
        map: fn(&mut Self) -> &mut BTreeMap<K, Value>,
        key: K,
        what: &str,
        name: &str,
        mut body: Value,
    ) -> Reply {
        if map(self).contains_key(&key) {
            let message = format!("{what} \"{name}\" already exists");
            return status(409, "AlreadyExists", message, None);
        }
        self.stamp(&mut body);
        map(self).insert(key, body.clone());
        ok(201, &body)
    }

    fn stamp(&mut self, obj: &mut Value) {
        self.serial += 1;
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{}", self.serial));
        }
        obj["metadata"]["resourceVersion"] = json!(self.serial.to_string());
    }

    fn route(&mut self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let body = body.cloned().unwrap_or(Value::Null);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (Method::Get, ["api", "v1", "nodes", n]) => match self.nodes.get(*n) {
                Some(v) => ok(200, v),
                None => status(
                    404,
                    "NotFound",
                    format!("nodes \"{n}\" not found"),
                    Some("nodes"),
                ),
            },
            (Method::Post, ["api", "v1", "nodes"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                if let Some(prefix) = &self.forbidden_label_prefix {
                    let labels = body["metadata"]["labels"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    if let Some(l) = labels.keys().find(|k| k.starts_with(prefix.as_str())) {
                        return status(403, "Forbidden", format!("nodes \"{name}\" is forbidden: node \"{name}\" is not allowed to set the following labels: {l}"), None);
                    }
                }
                self.create(|s| &mut s.nodes, name.clone(), "nodes", &name, body)
            }
            (Method::Patch, ["api", "v1", "nodes", n, rest @ ..]) => match self.nodes.get_mut(*n) {
                Some(node) if rest.is_empty() || rest == ["status"] => {
                    merge(node, &body);
                    ok(200, node)
                }
                _ => status(
                    404,
                    "NotFound",
                    format!("nodes \"{n}\" not found"),
                    Some("nodes"),
                ),
            },
            (Method::Post, ["apis", "coordination.k8s.io", "v1", "namespaces", _, "leases"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                self.create(
                    |s| &mut s.leases,
                    name.clone(),
                    "leases.coordination.k8s.io",
                    &name,
                    body,
                )
            }
            (
                m @ (Method::Get | Method::Put),
                ["apis", "coordination.k8s.io", "v1", "namespaces", _, "leases", n],
            ) => {
                let Some(old) = self.leases.get(*n).cloned() else {
                    return status(
                        404,
                        "NotFound",
                        format!("leases.coordination.k8s.io \"{n}\" not found"),
                        None,
                    );
                };
                if m == Method::Get {
                    return ok(200, &old);
                }
                if body["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified".into(), None);
                }
                let mut l = body;
                l["metadata"]["uid"] = old["metadata"]["uid"].clone();
                self.stamp(&mut l);
                self.leases.insert(n.to_string(), l.clone());
                ok(200, &l)
            }
            (Method::Get, ["api", "v1", "pods"])
                if query.starts_with("fieldSelector=spec.nodeName%3D") =>
            {
                let rest = query.split_once("%3D").map_or("", |(_, q)| q);
                let node = rest.split('&').next().unwrap_or("");
                let items: Vec<Value> = self
                    .pods
                    .values()
                    .filter(|p| p["spec"]["nodeName"] == node)
                    .cloned()
                    .collect();
                let rv = self.serial.to_string();
                ok(
                    200,
                    &json!({"kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            (Method::Post, ["api", "v1", "namespaces", ns, "events"]) => {
                if !self.namespaces.contains(*ns) {
                    return status(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                        Some("namespaces"),
                    );
                }
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                let key = (ns.to_string(), name.clone());
                self.create(|s| &mut s.events, key, "events", &name, body)
            }
            (Method::Patch, ["api", "v1", "namespaces", ns, "events", name]) => {
                match self.events.get_mut(&(ns.to_string(), name.to_string())) {
                    Some(e) => {
                        merge(e, &body);
                        ok(200, e)
                    }
                    None => status(
                        404,
                        "NotFound",
                        format!("events \"{name}\" not found"),
                        None,
                    ),
                }
            }
            (Method::Post, ["api", "v1", "namespaces", ns, "pods"]) => {
                if !self.namespaces.contains(*ns) {
                    return status(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                        Some("namespaces"),
                    );
                }
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                if let Some(old) = self.pods.get(&(ns.to_string(), name.clone())) {
                    let deleting = if old["metadata"]["deletionTimestamp"].is_null() {
                        ""
                    } else {
                        "object is being deleted: "
                    };
                    return status(
                        409,
                        "AlreadyExists",
                        format!("{deleting}pods \"{name}\" already exists"),
                        Some("pods"),
                    );
                }
                let mut p = body;
                self.stamp(&mut p);
                p["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
                self.pods.insert((ns.to_string(), name), p.clone());
                self.notify("ADDED", p.clone());
                ok(201, &p)
            }
            (m, ["api", "v1", "namespaces", ns, "pods", name, rest @ ..]) => {
                let key = (ns.to_string(), name.to_string());
                let Some(pod) = self.pods.get(&key).cloned() else {
                    return status(
                        404,
                        "NotFound",
                        format!("pods \"{name}\" not found"),
                        Some("pods"),
                    );
                };
                let uid_ok = |want: &Value| want.is_null() || *want == pod["metadata"]["uid"];
                match (m, rest) {
                    (Method::Get, []) => ok(200, &pod),
                    (Method::Delete, []) if !uid_ok(&body["preconditions"]["uid"]) => status(
                        409,
                        "Conflict",
                        "Precondition failed: UID in precondition".into(),
                        Some("pods"),
                    ),
                    (Method::Delete, []) => {
                        self.pods.remove(&key);
                        self.notify("DELETED", pod.clone());
                        ok(200, &pod)
                    }
                    (Method::Patch, ["status"]) if !uid_ok(&body["metadata"]["uid"]) => status(
                        409,
                        "Conflict",
                        "Precondition failed: UID in precondition".into(),
                        Some("pods"),
                    ),
                    (Method::Patch, ["status"]) => {
                        let mut p = pod;
                        merge(&mut p["status"], &body["status"]);
                        self.stamp(&mut p);
                        self.pods.insert(key, p.clone());
                        self.notify("MODIFIED", p.clone());
                        ok(200, &p)
                    }
                    _ => status(
                        403,
                        "Forbidden",
                        format!("pods \"{name}\" is forbidden"),
                        None,
                    ),
                }
            }
            _ => status(404, "NotFound", format!("no route {path}"), None),
        }
    }
}

impl Api for Fake {
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, ApiError> {
        let mut s = self.lock();
        if s.down {
            return Err(ApiError::Unreachable {
                method: method.as_str(),
                url: path.into(),
                message: "connection refused".into(),
            });
        }
        s.calls.push(format!("{} {path}", method.as_str()));
        Ok(s.route(method, path, body))
    }

    fn start_watch(&self, path: String, _timeout: std::time::Duration, to: WatchTx) {
        let mut s = self.lock();
        if s.down {
            let _ = to
                .tx
                .send(WatchMsg::Ended(Some("connection refused".into())));
            return;
        }
        s.calls.push(format!("WATCH {path}"));
        s.watchers.push(to);
    }
}
