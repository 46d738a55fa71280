//! Posting the agent's events: oldest first, each with its original timestamps, as a `v1`
//! Event on the mirror pod (its UID in `involvedObject`), a repeat as a patch of the same
//! object's count. At most `eventQPS` a second with a burst (the kubelet's 5 and 10), so a
//! gateway that comes back with a full buffer does not flood the API server.
//!
//! An event of a pod whose mirror pod is about to be created waits for it (a few seconds at
//! most), so `kubectl describe` of the mirror pod shows it; a pod that has no mirror pod (it
//! is gone, or the server refused it) gets its events under the static pod's UID. An event
//! the server refuses (its namespace does not exist) is logged once and dropped; a server
//! error or throttling waits with backoff. While events wait, the buffer is kept on disk.

use super::api::{Api, Method};
use super::sync::{jitter, Backoff, Link, LinkError, Syncer, Timing};
use crate::events::{wire, Entry, Kind};
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

/// How long an event of a pod that is not published yet may wait for the pod (the agent
/// records before it publishes).
const UNPUBLISHED_WAIT: Duration = Duration::from_secs(3);
/// How soon a held event is looked at again.
const HELD_RECHECK: Duration = Duration::from_secs(1);

/// The poster's own state.
pub(crate) struct PostState {
    tokens: f64,
    refilled: Instant,
    /// After a server error, throttling or a held event: nothing is posted before this.
    retry_at: Option<Instant>,
    /// Set by a server error or throttling (not by a held event).
    failing: bool,
    backoff: Backoff,
    /// Refusal messages already logged.
    warned: BTreeSet<String>,
    save_at: Instant,
    save_failed: bool,
}

impl PostState {
    pub fn new(t: &Timing, now: Instant) -> PostState {
        PostState {
            tokens: t.event_burst,
            refilled: now,
            retry_at: None,
            failing: false,
            backoff: Backoff::new((Duration::from_secs(1), Duration::from_secs(60))),
            warned: BTreeSet::new(),
            save_at: now,
            save_failed: false,
        }
    }

    fn refill(&mut self, now: Instant, t: &Timing) {
        let secs = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + secs * t.event_qps).min(t.event_burst);
        self.refilled = now;
    }
}

impl<A: Api> Syncer<A> {
    /// Posts what is pending, as far as the rate allows.
    pub(super) fn post_events(&mut self, now: Instant) -> Result<(), LinkError> {
        if self.post.retry_at.is_some_and(|t| t > now) {
            return Ok(());
        }
        self.post.retry_at = None;
        self.post.refill(now, &self.t);
        while self.post.tokens >= 1.0 {
            let Some(entry) = self.events.lock().next_pending().cloned() else {
                break;
            };
            let Some(uid) = self.involved_uid(&entry) else {
                self.post.retry_at = Some(now + HELD_RECHECK);
                break;
            };
            self.post.tokens -= 1.0;
            let (dir, path) = wire::paths(&entry);
            let create = entry.posted == 0;
            let r = if create {
                let body = wire::event_object(&entry, &self.s.node, &uid);
                self.call(Method::Post, &dir, Some(&body))?
            } else {
                self.call(Method::Patch, &path, Some(&wire::repeat_patch(&entry)))?
            };
            let mut store = self.events.lock();
            match (create, r.code) {
                (_, 200 | 201) => store.mark_posted(&entry.name, entry.count),
                // Created by an earlier try whose answer was lost: patch it next.
                (true, 409) => store.mark_posted(&entry.name, 1),
                // Gone from the server (events expire after an hour): create it again.
                (false, 404) => store.mark_unposted(&entry.name),
                (_, 429 | 500..) => {
                    drop(store);
                    self.post.failing = true;
                    self.post.retry_at = Some(now + self.post.backoff.next(jitter()));
                    log::debug!("posting events: {}; retrying with backoff", r.message());
                    return Ok(());
                }
                _ => {
                    store.mark_posted(&entry.name, entry.count);
                    drop(store);
                    self.refused_event(&entry, &r.message());
                    continue;
                }
            }
            if self.post.failing {
                self.post.failing = false;
                self.post.backoff = Backoff::new((Duration::from_secs(1), Duration::from_secs(60)));
            }
        }
        Ok(())
    }

    /// The UID to name in `involvedObject`, or None while the event should wait for its
    /// mirror pod.
    fn involved_uid(&self, entry: &Entry) -> Option<String> {
        let s = &entry.subject;
        if s.kind == Kind::Node {
            return Some(self.s.node.clone());
        }
        let key = (s.namespace.clone(), s.name.clone());
        if let Some(m) = self.seen.get(&key).filter(|m| m.hash == s.uid) {
            return Some(m.uid.clone());
        }
        let published = self.pods.iter().any(|p| {
            p["metadata"]["uid"] == s.uid.as_str() && p["metadata"]["deletionTimestamp"].is_null()
        });
        let coming = published && !self.holds.contains_key(&key);
        let young = crate::sys::timefmt::parse_rfc3339(&entry.last)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < UNPUBLISHED_WAIT);
        if coming || (!published && young) {
            return None;
        }
        Some(s.uid.clone())
    }

    fn refused_event(&mut self, entry: &Entry, message: &str) {
        if self.post.warned.len() < 100 && self.post.warned.insert(message.to_string()) {
            log::warn!(
                "event {} of {}/{} refused by the API server: {message}; dropped",
                entry.reason,
                entry.subject.namespace,
                entry.subject.name
            );
        }
    }

    /// When to post again: the next token, or the retry time.
    pub(super) fn next_post(&self, now: Instant) -> Option<Instant> {
        if self.events.lock().pending_count() == 0 {
            return None;
        }
        if let Some(t) = self.post.retry_at {
            return Some(t);
        }
        let missing = (1.0 - self.post.tokens).max(0.0);
        Some(now + Duration::from_secs_f64(missing / self.t.event_qps.max(0.001)))
    }

    fn flowing(&self) -> bool {
        matches!(self.link, Link::Up) && !self.post.failing
    }

    /// Keeps the buffer on disk while events cannot be posted (debounced); removes the file
    /// once they are. While events flow, nothing is written.
    pub(super) fn save_events(&mut self, now: Instant) {
        let (dirty, pending) = self.events.save_state();
        if !dirty || (pending && self.flowing()) || now < self.post.save_at {
            return;
        }
        self.post.save_at = now + self.t.persist_every;
        match self.events.persist() {
            Ok(()) => self.post.save_failed = false,
            Err(e) if !self.post.save_failed => {
                self.post.save_failed = true;
                log::warn!("{e}; the events stay in memory");
            }
            Err(_) => {}
        }
    }

    /// When the buffer is due to be saved, if it is.
    pub(super) fn next_save(&self) -> Option<Instant> {
        let (dirty, pending) = self.events.save_state();
        (dirty && !(pending && self.flowing())).then_some(self.post.save_at)
    }
}
