//! Carrying out the mirror diff: each operation is one API call whose answer updates what
//! the sync knows (`seen`, `written`, `holds`), as the watch does between them. A refusal
//! (the namespace does not exist, admission, validation) holds the pod with backoff and is
//! reported, never retried hot; a transport failure ends the pass and takes the link down.

use super::api::{Method, Reply};
use super::diff::{self, key_text, Key, Op, Want, Why, Written};
use super::sync::{jitter, Backoff, Hold, LinkError, Syncer};
use crate::status::MirrorState;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;

impl<A: super::api::Api> Syncer<A> {
    /// Plans and executes until nothing is left to do now (a replace is delete, create, then
    /// status: three rounds).
    pub(super) fn sync_mirrors(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.version == 0 {
            return Ok(()); // the agent has not published yet: no orphans can be told apart
        }
        let wants = diff::wants(&self.pods);
        let by_key: BTreeMap<&Key, &Want> = wants.iter().map(|w| (&w.key, w)).collect();
        // Keep only what concerns current pods (and holds on orphans still listed).
        self.written.retain(|k, _| by_key.contains_key(k));
        let seen = &self.seen;
        self.holds.retain(|k, h| match by_key.get(k) {
            Some(w) => w.hash == h.hash,
            None => seen.contains_key(k),
        });
        let mut replaced: BTreeMap<Key, Why> = BTreeMap::new();
        for _ in 0..4 {
            let holds = &self.holds;
            let held = |k: &Key, at: Instant| holds.get(k).is_some_and(|h| h.until > at);
            let ops = diff::plan(&wants, &self.seen, &self.written, &held, now);
            if ops.is_empty() {
                break;
            }
            for op in ops {
                match op {
                    Op::Create(key) if !self.seen.contains_key(&key) => {
                        let why = replaced.remove(&key);
                        if let Some(w) = by_key.get(&key) {
                            self.create(w, why, now)?
                        }
                    }
                    Op::Create(_) => {} // its delete did not go through
                    Op::Delete { key, uid, why } => {
                        if self.delete(&key, &uid, &why, now)? && why != Why::Orphan {
                            replaced.insert(key, why);
                        }
                    }
                    Op::PatchStatus(key) => {
                        if let Some(w) = by_key.get(&key) {
                            self.patch_status(w, now)?
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn create(&mut self, want: &Want, why: Option<Why>, now: Instant) -> Result<(), LinkError> {
        let name = key_text(&want.key);
        let uid = self.node_uid.clone().ok_or(LinkError::NotYet)?;
        let body = diff::mirror_body(want, &self.s.node, &uid);
        let r = self.call(
            Method::Post,
            &format!("/api/v1/namespaces/{}/pods", want.key.0),
            Some(&body),
        )?;
        match r.code {
            200 | 201 => {
                let how = match why {
                    Some(Why::Changed) => "replaced (manifest changed)",
                    Some(Why::Deleting) => "recreated (it was being deleted)",
                    _ if self.written.contains_key(&want.key) => {
                        "recreated (it was deleted in the API server)"
                    }
                    _ => "created",
                };
                log::info!("mirror pod {name} {how}");
                self.holds.remove(&want.key);
                if let Some((k, s)) = diff::seen(&r.body) {
                    self.seen.insert(k, s);
                }
            }
            // Exists: take it if it matches; otherwise the next round replaces it.
            409 if r.reason() == "AlreadyExists" => {
                let path = format!("/api/v1/namespaces/{}/pods/{}", want.key.0, want.key.1);
                let g = self.call(Method::Get, &path, None)?;
                match (g.code, diff::seen(&g.body)) {
                    (200, Some((k, s))) => {
                        self.seen.insert(k, s);
                    }
                    (200, None) => self.hold(
                        want,
                        MirrorState::Refused(format!("pod {name} exists and is not a mirror pod")),
                        now,
                    ),
                    _ => {}
                }
            }
            _ => self.refused(want, &r, now),
        }
        Ok(())
    }

    /// Deletes a mirror pod at once, only if it still has `uid`; true when it is gone.
    fn delete(&mut self, key: &Key, uid: &str, why: &Why, now: Instant) -> Result<bool, LinkError> {
        let name = key_text(key);
        let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
        let path = format!("/api/v1/namespaces/{}/pods/{}", key.0, key.1);
        let r = self.call(Method::Delete, &path, Some(&body))?;
        match r.code {
            200 | 202 | 404 => {
                if *why == Why::Orphan && r.code != 404 {
                    log::info!("mirror pod {name} deleted (its static pod is gone)");
                }
                self.forget_deleted(uid);
                self.seen.remove(key);
                if *why == Why::Orphan {
                    self.written.remove(key);
                }
                Ok(true)
            }
            // Another object by that name now: the next create finds it (AlreadyExists).
            409 => {
                self.seen.remove(key);
                Ok(false)
            }
            _ => {
                let message = format!("cannot delete: {}", r.message());
                // A pod's refusal is logged by the report; an orphan has no pod to report on.
                let repeated = self
                    .holds
                    .get(key)
                    .is_some_and(|h| h.state == MirrorState::Refused(message.clone()));
                if *why == Why::Orphan && !repeated {
                    log::warn!("mirror pod {name}: {message}");
                }
                let hash = self
                    .seen
                    .get(key)
                    .map(|s| s.hash.clone())
                    .unwrap_or_default();
                let hash = diff::wants(&self.pods)
                    .into_iter()
                    .find(|w| &w.key == key)
                    .map_or(hash, |w| w.hash);
                self.put_hold(key, hash, MirrorState::Refused(message), now);
                Ok(false)
            }
        }
    }

    fn patch_status(&mut self, want: &Want, now: Instant) -> Result<(), LinkError> {
        let Some(mirror_uid) = self.seen.get(&want.key).map(|s| s.uid.clone()) else {
            return Ok(());
        };
        let last = self
            .written
            .get(&want.key)
            .filter(|w| w.mirror_uid == mirror_uid)
            .map(|w| &w.status);
        let status = diff::status_to_write(want, last);
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/status",
            want.key.0, want.key.1
        );
        let r = self.call(
            Method::Patch,
            &path,
            Some(&diff::status_patch(&status, &mirror_uid)),
        )?;
        match r.code {
            200 => {
                if let Some((k, s)) = diff::seen(&r.body) {
                    self.seen.insert(k, s);
                }
                self.written
                    .insert(want.key.clone(), Written { mirror_uid, status });
            }
            // Deleted, or replaced by another object of that name, since we looked: the
            // next round creates it, or finds the other one (AlreadyExists).
            404 | 409 => {
                self.seen.remove(&want.key);
            }
            _ => self.refused(want, &r, now),
        }
        Ok(())
    }

    /// A 4xx is the server's verdict on this pod (refused until the cause is fixed); a 5xx
    /// or 429 a passing error. Both wait for a retry with backoff.
    fn refused(&mut self, want: &Want, r: &Reply, now: Instant) {
        let state = if (400..500).contains(&r.code) && r.code != 429 {
            MirrorState::Refused(r.message())
        } else {
            MirrorState::Pending(format!("API server error: {}", r.message()))
        };
        self.hold(want, state, now);
    }

    fn hold(&mut self, want: &Want, state: MirrorState, now: Instant) {
        self.put_hold(&want.key, want.hash.clone(), state, now);
    }

    fn put_hold(&mut self, key: &Key, hash: String, state: MirrorState, now: Instant) {
        let mut backoff = match self.holds.remove(key) {
            Some(h) if h.hash == hash => h.backoff,
            _ => Backoff::new(self.t.refused_retry),
        };
        let until = now + backoff.next(jitter());
        self.holds.insert(
            key.clone(),
            Hold {
                hash,
                until,
                backoff,
                state,
            },
        );
    }
}
