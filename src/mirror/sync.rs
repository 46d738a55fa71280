//! The sync loop: one thread that owns the API server link. It reads the status board, never
//! the containers, and keeps only the current picture (the latest published pods, the
//! mirrors last listed, one hold per refused pod), so hours offline cost no memory.
//!
//! The link is `Down` (retrying with capped exponential backoff and jitter) or `Up`. Going
//! up is a full resync: register the Node, write its status, renew the Lease, list this
//! node's pods. While up, the Lease is renewed and the pods listed every 10 s, and the
//! mirror diff runs whenever the agent publishes.

use super::api::{Api, Method, Reply};
use super::diff::{Key, Seen, Written};
use super::node::HostFacts;
use crate::status::{MirrorState, StatusBoard};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the sync needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub node_labels: BTreeMap<String, String>,
    pub system_reserved: BTreeMap<String, String>,
    /// The server URL, for log lines.
    pub server: String,
    pub runtime_version: String,
}

/// Intervals; the defaults are the kubelet's.
#[derive(Debug, Clone)]
pub struct Timing {
    pub lease_renew: Duration,
    /// How often this node's pods are listed (a mirror deleted by someone comes back).
    pub resync: Duration,
    /// How often the Node status is rebuilt and written if it changed ...
    pub node_status_check: Duration,
    /// ... and written anyway, as a heartbeat beside the Lease.
    pub node_status_report: Duration,
    /// Backoff while the server is unreachable.
    pub link_retry: (Duration, Duration),
    /// Backoff for a mirror pod the server refused (until an admin fixes the cause).
    pub refused_retry: (Duration, Duration),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_renew: Duration::from_secs(10),
            resync: Duration::from_secs(10),
            node_status_check: Duration::from_secs(60),
            node_status_report: Duration::from_secs(300),
            link_retry: (Duration::from_secs(1), Duration::from_secs(10)),
            refused_retry: (Duration::from_secs(2), Duration::from_secs(30)),
        }
    }
}

/// Capped exponential backoff with "equal jitter": half the delay fixed, half random.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    pub fn new((min, max): (Duration, Duration)) -> Backoff {
        Backoff {
            min,
            max,
            current: None,
        }
    }
    /// The next delay; `jitter` is in `[0, 1)`.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let d = self.current.map_or(self.min, |c| (c * 2).min(self.max));
        self.current = Some(d);
        d / 2 + (d / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A number in `[0, 1)` without a random-number crate: std's per-instance random hash keys.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Why the link is down, as the log and `/pods` say it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("not connected yet")]
    NotYet,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{call}: unauthorized ({message}); check the kubeconfig's credentials")]
    Unauthorized { call: String, message: String },
    /// The server answered, but the node's own objects (Node, Lease, pod list) need more.
    #[error("{what}: {message}")]
    Refused { what: String, message: String },
}

/// One log line per outage: when the link goes down, or when the failure changes kind
/// (unreachable, unauthorized, refused). A connect that is refused and then times out is
/// the same outage, whatever the error text says.
pub(super) fn announce(old: Option<&LinkError>, new: &LinkError) -> bool {
    match old {
        None | Some(LinkError::NotYet) => true,
        Some(old) => std::mem::discriminant(old) != std::mem::discriminant(new),
    }
}

impl LinkError {
    pub fn refused(what: impl Into<String>, message: impl Into<String>) -> LinkError {
        LinkError::Refused {
            what: what.into(),
            message: message.into(),
        }
    }
}

pub(super) enum Link {
    Down {
        reason: LinkError,
        retry_at: Instant,
        backoff: Backoff,
        ever_up: bool,
    },
    Up,
}

/// A pod the server refused, or that failed with a server error: retried at `until`.
pub(super) struct Hold {
    pub hash: String,
    pub until: Instant,
    pub backoff: Backoff,
    pub state: MirrorState,
}

pub struct Syncer<A: Api> {
    pub(super) api: A,
    pub(super) s: Settings,
    pub(super) t: Timing,
    pub(super) board: Arc<StatusBoard>,
    pub(super) facts: HostFacts,
    pub(super) link: Link,
    pub(super) node_uid: Option<String>,
    pub(super) ready_since: String,
    pub(super) labels_refused: bool,
    pub(super) lease_rv: Option<String>,
    pub(super) next_lease: Instant,
    pub(super) next_list: Instant,
    pub(super) next_node_status: Instant,
    pub(super) node_status: Option<(Value, Instant)>,
    pub(super) seen: BTreeMap<Key, Seen>,
    pub(super) written: BTreeMap<Key, Written>,
    pub(super) holds: BTreeMap<Key, Hold>,
    pub(super) reported: BTreeMap<String, MirrorState>,
    pub(super) version: u64,
    pub(super) pods: Vec<Value>,
}

impl<A: Api> Syncer<A> {
    pub fn new(api: A, s: Settings, t: Timing, board: Arc<StatusBoard>, facts: HostFacts) -> Self {
        let now = Instant::now();
        let link = Link::Down {
            reason: LinkError::NotYet,
            retry_at: now,
            backoff: Backoff::new(t.link_retry),
            ever_up: false,
        };
        Syncer {
            api,
            s,
            t,
            board,
            facts,
            link,
            node_uid: None,
            ready_since: crate::timefmt::now_rfc3339(),
            labels_refused: false,
            lease_rv: None,
            next_lease: now,
            next_list: now,
            next_node_status: now,
            node_status: None,
            seen: BTreeMap::new(),
            written: BTreeMap::new(),
            holds: BTreeMap::new(),
            reported: BTreeMap::new(),
            version: 0,
            pods: Vec::new(),
        }
    }

    /// Runs forever (the thread ends with the process).
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            self.step(now);
            let wait = self
                .next_wake(now)
                .saturating_duration_since(Instant::now());
            let (v, shared) = self.board.wait_newer(self.version, wait);
            if v != self.version {
                self.version = v;
                self.pods = shared.pods.iter().map(|p| p.to_json()).collect();
            }
        }
    }

    /// Does whatever is due at `now`: reconnect, or renew, list and sync mirrors.
    pub fn step(&mut self, now: Instant) {
        let result = match &self.link {
            Link::Down { retry_at, .. } if now < *retry_at => Ok(()),
            Link::Down { .. } => self.connect(now),
            Link::Up => self.tick(now),
        };
        if let Err(reason) = result {
            self.link_failed(reason, now);
        }
        self.report();
    }

    fn connect(&mut self, now: Instant) -> Result<(), LinkError> {
        self.register_node()?;
        self.write_node_status(now, true)?;
        self.renew_lease(now)?;
        self.list(now)?;
        if let Link::Down { ever_up, .. } = &self.link {
            if *ever_up {
                log::info!(
                    "API server {} reachable again; resynced node {}",
                    self.s.server,
                    self.s.node
                );
            } else {
                log::info!(
                    "connected to the API server {} as node {}",
                    self.s.server,
                    self.s.node
                );
            }
        }
        self.link = Link::Up;
        self.sync_mirrors(now)
    }

    fn tick(&mut self, now: Instant) -> Result<(), LinkError> {
        if now >= self.next_lease {
            self.renew_lease(now)?;
        }
        if now >= self.next_node_status {
            self.write_node_status(now, false)?;
        }
        if now >= self.next_list {
            self.list(now)?;
        }
        self.sync_mirrors(now)
    }

    fn link_failed(&mut self, reason: LinkError, now: Instant) {
        let (mut backoff, ever_up, old) = match std::mem::replace(&mut self.link, Link::Up) {
            Link::Down {
                backoff,
                ever_up,
                reason,
                ..
            } => (backoff, ever_up, Some(reason)),
            Link::Up => (Backoff::new(self.t.link_retry), true, None),
        };
        if announce(old.as_ref(), &reason) {
            log::warn!(
                "API server {}: {reason}; pods keep running, retrying with backoff",
                self.s.server
            );
        }
        // Only the current picture is kept: the next connect lists the mirrors again.
        self.seen.clear();
        let retry_at = now + backoff.next(jitter());
        self.link = Link::Down {
            reason,
            retry_at,
            backoff,
            ever_up,
        };
    }

    /// One call; a 401 counts as a link failure (the credentials, not the pod, are wrong).
    pub(super) fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, LinkError> {
        // The cause alone (not the URL), so an outage is one log line however many calls fail.
        let r = self.api.call(method, path, body).map_err(|e| match e {
            super::api::ApiError::Unreachable { message, .. } => LinkError::Unreachable(message),
            e => LinkError::Unreachable(e.to_string()),
        })?;
        log::debug!("API server: {} {path}: {}", method.as_str(), r.code);
        if r.code == 401 {
            return Err(LinkError::Unauthorized {
                call: format!("{} {path}", method.as_str()),
                message: r.message(),
            });
        }
        Ok(r)
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(60);
        match &self.link {
            Link::Down { retry_at, .. } => wake = wake.min(*retry_at),
            Link::Up => {
                wake = wake
                    .min(self.next_lease)
                    .min(self.next_list)
                    .min(self.next_node_status);
                if let Some(h) = self
                    .holds
                    .values()
                    .map(|h| h.until)
                    .filter(|u| *u > now)
                    .min()
                {
                    wake = wake.min(h);
                }
            }
        }
        wake
    }

    /// Puts each pod's mirror state on the board; logs refusals and errors once.
    pub(super) fn report(&mut self) {
        let wants = super::diff::wants(&self.pods);
        for w in &wants {
            let state = match &self.link {
                Link::Down { reason, .. } => {
                    MirrorState::Pending(format!("no connection to the API server: {reason}"))
                }
                Link::Up => match self.holds.get(&w.key).filter(|h| h.hash == w.hash) {
                    Some(h) => h.state.clone(),
                    None if self.synced(&w.key, &w.hash, &w.pod["status"]) => MirrorState::Synced,
                    None => MirrorState::Pending("not written yet".into()),
                },
            };
            if self.reported.get(&w.uid) == Some(&state) {
                continue;
            }
            let name = super::diff::key_text(&w.key);
            match &state {
                MirrorState::Refused(m) => log::warn!("mirror pod {name} refused: {m}"),
                MirrorState::Pending(m) if self.holds.contains_key(&w.key) => {
                    log::warn!("mirror pod {name}: {m}; retrying")
                }
                _ => {}
            }
            self.board.set_mirror(&w.uid, Some(state.clone()));
            self.reported.insert(w.uid.clone(), state);
        }
        let gone: Vec<String> = self
            .reported
            .keys()
            .filter(|u| !wants.iter().any(|w| &w.uid == *u))
            .cloned()
            .collect();
        for uid in gone {
            self.board.set_mirror(&uid, None);
            self.reported.remove(&uid);
        }
    }

    fn synced(&self, key: &Key, hash: &str, status: &Value) -> bool {
        let (Some(s), Some(w)) = (self.seen.get(key), self.written.get(key)) else {
            return false;
        };
        s.hash == hash
            && !s.deleting
            && w.mirror_uid == s.uid
            && super::diff::same_status(&w.status, status)
    }
}
