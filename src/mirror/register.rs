//! The node's own objects: registering the Node (mirror pods are owned by it, so nothing
//! else happens before it exists), writing its status, and renewing its Lease.
//!
//! Every failure here is returned as a link failure: without a Node or a Lease the mirror
//! pods cannot be kept, so the sync backs off and tries the whole resync again.

use super::api::Method;
use super::node::{self, LEASE_NAMESPACE};
use super::sync::{LinkError, Syncer};
use serde_json::{json, Value};
use std::time::{Instant, SystemTime};

impl<A: super::api::Api> Syncer<A> {
    /// Finds or creates the Node; sets `node_uid`.
    pub(super) fn register_node(&mut self) -> Result<(), LinkError> {
        // From the API server's cache, as a kubelet reads its Node.
        let path = format!("/api/v1/nodes/{}", self.s.node);
        let r = self.call(Method::Get, &format!("{path}?resourceVersion=0"), None)?;
        match r.code {
            200 => {
                self.node_uid = Some(uid_of(&r.body, &path)?);
                self.ensure_labels(&r.body, &path)
            }
            404 => self.create_node(),
            _ => Err(LinkError::refused(
                format!("reading node {}", self.s.node),
                r.message(),
            )),
        }
    }

    fn wanted_labels(&self) -> std::collections::BTreeMap<String, String> {
        let empty = Default::default();
        let extra = if self.labels_refused {
            &empty
        } else {
            &self.s.node_labels
        };
        node::labels(&self.s.node, &self.facts, extra)
    }

    fn create_node(&mut self) -> Result<(), LinkError> {
        let node = self.s.node.clone();
        loop {
            let body = node::node_object(&node, &self.wanted_labels());
            let r = self.call(Method::Post, "/api/v1/nodes", Some(&body))?;
            match r.code {
                200 | 201 => {
                    self.node_uid = Some(uid_of(&r.body, &node)?);
                    log::info!("node {node} registered");
                    return Ok(());
                }
                // Created meanwhile (another start of ours): take it.
                409 => return self.register_node(),
                // NodeRestriction refuses some label prefixes: register without the user's
                // labels rather than never (mirror pods need the Node), and say why once.
                403 if !self.labels_refused && !self.s.node_labels.is_empty() => {
                    log::warn!("node {node}: the API server refused it with the configured node labels ({}); registering without them", r.message());
                    self.labels_refused = true;
                }
                _ => {
                    return Err(LinkError::refused(
                        format!("registering node {node}"),
                        r.message(),
                    ))
                }
            }
        }
    }

    /// An existing Node gets the labels it lacks (the well-known ones, then the user's).
    fn ensure_labels(&mut self, node: &Value, path: &str) -> Result<(), LinkError> {
        loop {
            let missing: serde_json::Map<String, Value> = self
                .wanted_labels()
                .into_iter()
                .filter(|(k, v)| node["metadata"]["labels"][k] != v.as_str())
                .map(|(k, v)| (k, json!(v)))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let r = self.call(
                Method::Patch,
                path,
                Some(&json!({"metadata": {"labels": missing}})),
            )?;
            if r.ok() {
                return Ok(());
            }
            let keys: Vec<&String> = missing.keys().collect();
            log::warn!(
                "node {}: cannot set labels {keys:?}: {}",
                self.s.node,
                r.message()
            );
            if self.labels_refused || self.s.node_labels.is_empty() {
                return Ok(()); // the Node is usable without them
            }
            self.labels_refused = true; // once more, without the configured labels
        }
    }

    /// Writes the Node status when it changed, when `force`d, or as a periodic heartbeat.
    pub(super) fn write_node_status(&mut self, now: Instant, force: bool) -> Result<(), LinkError> {
        self.next_node_status = now + self.t.node_status_check;
        self.facts = node::HostFacts::read(&self.s.runtime_version);
        if let Some(ip) = &self.s.node_ip {
            self.facts.internal_ip = ip.clone();
        }
        let wall = crate::sys::timefmt::now_rfc3339();
        let status = node::node_status(
            &self.facts,
            &self.s.system_reserved,
            self.s.kubelet_port.unwrap_or(0),
            &self.ready_since,
            &wall,
        );
        let fresh = self.node_status.as_ref().is_some_and(|(old, at)| {
            super::diff::same_status(old, &status)
                && now.duration_since(*at) < self.t.node_status_report
        });
        if fresh && !force {
            return Ok(());
        }
        let path = format!("/api/v1/nodes/{}/status", self.s.node);
        let r = self.call(Method::Patch, &path, Some(&json!({"status": status})))?;
        match r.code {
            200 => {
                self.node_status = Some((status, now));
                Ok(())
            }
            404 => {
                self.node_uid = None;
                Err(LinkError::refused(
                    format!("node {}", self.s.node),
                    "gone from the API server; registering it again",
                ))
            }
            _ => Err(LinkError::refused(
                format!("writing the status of node {}", self.s.node),
                r.message(),
            )),
        }
    }

    /// Renews (or creates) `kube-node-lease/<node>`, owned by the Node.
    pub(super) fn renew_lease(&mut self, now: Instant) -> Result<(), LinkError> {
        let node = self.s.node.clone();
        let uid = self.node_uid.clone().ok_or(LinkError::NotYet)?;
        let dir = format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases");
        let path = format!("{dir}/{node}");
        for _ in 0..3 {
            let body = node::lease(
                &node,
                &uid,
                &node::micro_time(SystemTime::now()),
                self.lease_rv.as_deref(),
            );
            let r = match self.lease_rv {
                Some(_) => self.call(Method::Put, &path, Some(&body))?,
                None => self.call(Method::Post, &dir, Some(&body))?,
            };
            match r.code {
                200 | 201 => {
                    self.lease_rv = r.body["metadata"]["resourceVersion"]
                        .as_str()
                        .map(String::from);
                    self.next_lease = now + self.t.lease_renew;
                    return Ok(());
                }
                // Stale version, or created or deleted by someone else: read it and go again.
                404 | 409 => {
                    let g = self.call(Method::Get, &path, None)?;
                    self.lease_rv = match g.code {
                        200 => g.body["metadata"]["resourceVersion"]
                            .as_str()
                            .map(String::from),
                        _ => None,
                    };
                }
                _ => {
                    return Err(LinkError::refused(
                        format!("renewing lease {LEASE_NAMESPACE}/{node}"),
                        r.message(),
                    ))
                }
            }
        }
        Err(LinkError::refused(
            format!("renewing lease {LEASE_NAMESPACE}/{node}"),
            "it keeps changing under us",
        ))
    }
}

fn uid_of(obj: &Value, what: &str) -> Result<String, LinkError> {
    obj["metadata"]["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .map(String::from)
        .ok_or_else(|| LinkError::refused(what, "the API server's answer has no metadata.uid"))
}
