//! This node's pods as the API server has them: listed once from the watch cache
//! (`resourceVersion=0`) when the link comes up, then kept current by one watch with
//! `fieldSelector=spec.nodeName=<node>`, resumed from the last resource version whenever it
//! ends and listed again only when the server says 410 Gone. This is what a kubelet does, and
//! it is why a quiet gateway costs the API server almost nothing: no periodic list.
//!
//! The watch runs on a thread of its own ([`super::api::Api::start_watch`]); its events
//! arrive here through a channel and are applied to `seen` between other work.

use super::api::{Api, Method, WatchMsg, WatchTx};
use super::diff;
use super::sync::{jitter, Backoff, LinkError, Syncer};
use serde_json::Value;
use std::sync::mpsc::TryRecvError;
use std::time::Instant;

/// Most watch events applied in one pass (the rest wait for the next, which comes at once).
const MAX_EVENTS_PER_PASS: usize = 1000;

impl<A: Api> Syncer<A> {
    fn pods_path(&self) -> String {
        format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", self.s.node)
    }

    /// Lists this node's pods from the watch cache and starts over from there.
    pub(super) fn list(&mut self, now: Instant) -> Result<(), LinkError> {
        let path = format!("{}&resourceVersion=0", self.pods_path());
        let r = self.call(Method::Get, &path, None)?;
        if r.code != 200 {
            return Err(LinkError::refused(
                format!("listing the pods of node {}", self.s.node),
                r.message(),
            ));
        }
        self.seen = r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(diff::seen)
            .collect();
        self.pod_rv = r.body["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from);
        self.need_list = false;
        self.deleted.clear();
        self.watch = None;
        self.next_watch = now;
        Ok(())
    }

    /// Opens the pod watch from the last resource version known.
    pub(super) fn start_watch(&mut self, now: Instant) {
        let Some(rv) = self.pod_rv.clone() else {
            self.need_list = true;
            return;
        };
        let (lo, hi) = self.t.watch_timeout;
        let timeout = lo + hi.saturating_sub(lo).mul_f64(jitter());
        let rv = percent_encoding::utf8_percent_encode(&rv, percent_encoding::NON_ALPHANUMERIC);
        let path = format!(
            "{}&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={}&watch=true",
            self.pods_path(),
            timeout.as_secs()
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let to = WatchTx {
            tx,
            wake: self.wake.clone(),
        };
        self.api.start_watch(path, timeout, to);
        self.watch = Some(rx);
        self.next_watch = now;
    }

    /// Applies what the watch brought since the last pass.
    pub(super) fn drain_watch(&mut self, now: Instant) {
        for _ in 0..MAX_EVENTS_PER_PASS {
            let Some(rx) = &self.watch else { return };
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    WatchMsg::Ended(Some("the watch thread ended".into()))
                }
            };
            match msg {
                WatchMsg::Event { kind, object } => self.apply(&kind, &object),
                WatchMsg::Gone => {
                    log::debug!("pod watch: 410 Gone; listing again");
                    self.watch = None;
                    self.need_list = true;
                }
                WatchMsg::Ended(None) => {
                    // The server's timeout: resume at once from where it stopped.
                    self.watch = None;
                    self.watch_backoff = Backoff::new(self.t.watch_retry);
                    self.next_watch = now;
                }
                WatchMsg::Ended(Some(why)) => {
                    log::debug!("pod watch ended: {why}; resuming with backoff");
                    self.watch = None;
                    self.next_watch = now + self.watch_backoff.next(jitter());
                }
            }
        }
        (self.wake)(); // more than one pass's worth: come back at once
    }

    fn apply(&mut self, kind: &str, object: &Value) {
        if let Some(rv) = object["metadata"]["resourceVersion"].as_str() {
            self.pod_rv = Some(rv.to_string());
        }
        let Some((key, seen)) = diff::seen(object) else {
            return; // a bookmark, or a pod that is not a mirror pod
        };
        match kind {
            "ADDED" | "MODIFIED" if !self.deleted.contains(&seen.uid) => {
                self.seen.insert(key, seen);
            }
            "DELETED" => {
                self.deleted.remove(&seen.uid);
                if self.seen.get(&key).is_some_and(|s| s.uid == seen.uid) {
                    self.seen.remove(&key);
                }
            }
            _ => {}
        }
    }

    /// Remembers a mirror pod this sync deleted, so its late events change nothing.
    pub(super) fn forget_deleted(&mut self, uid: &str) {
        if self.deleted.len() >= 1024 {
            self.deleted.clear();
        }
        self.deleted.insert(uid.to_string());
    }
}
