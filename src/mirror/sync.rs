//! The sync loop: one thread that owns the API server link. It reads the status board, never
//! the containers, and keeps only the current picture (the latest published pods, the
//! mirrors last listed, one hold per refused pod), so hours offline cost no memory.
//!
//! The link is `Down` (retrying with capped exponential backoff and jitter) or `Up`. Going
//! up is a full resync: register the Node (read from the API server's cache), write its
//! status, renew the Lease, list this node's pods (from the watch cache) and watch them from
//! there. While up, the Lease is renewed every 10 s, the Node status written when it changes
//! or every 5 minutes, the pod watch resumed from its last resource version when it ends
//! (listed again only after 410 Gone), the mirror diff run whenever the agent publishes or
//! the watch reports a change, and pending events posted. At steady state that is the Lease
//! and little else: about 6 requests a minute.

use super::api::{Api, Method, Reply, WatchMsg};
use super::diff::{Key, Seen, Written};
use super::node::HostFacts;
use crate::events::Recorder;
use crate::status::{MirrorState, StatusBoard};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::Receiver;
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
    /// The kubelet API's port, advertised in the Node's `daemonEndpoints` (None: off).
    pub kubelet_port: Option<u16>,
    /// `--node-ip`: the Node's InternalIP (default: the host's first address).
    pub node_ip: Option<String>,
}

/// Intervals; the defaults are the kubelet's.
#[derive(Debug, Clone)]
pub struct Timing {
    pub lease_renew: Duration,
    /// A pod watch is asked to end after a random time in this range (as client-go's
    /// reflector does, so a fleet's watches do not all restart at once).
    pub watch_timeout: (Duration, Duration),
    /// Backoff for a watch that failed (not for one the server ended on time).
    pub watch_retry: (Duration, Duration),
    /// Events posted per second at most, and in a burst (the kubelet's eventRecordQPS and
    /// eventBurst).
    pub event_qps: f64,
    pub event_burst: f64,
    /// The event buffer is written to disk at most this often while events wait.
    pub persist_every: Duration,
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
            watch_timeout: (Duration::from_secs(300), Duration::from_secs(600)),
            watch_retry: (Duration::from_secs(1), Duration::from_secs(30)),
            event_qps: 5.0,
            event_burst: 10.0,
            persist_every: Duration::from_secs(1),
            node_status_check: Duration::from_secs(60),
            node_status_report: Duration::from_secs(300),
            link_retry: (Duration::from_secs(1), Duration::from_secs(10)),
            refused_retry: (Duration::from_secs(2), Duration::from_secs(30)),
        }
    }
}

pub use super::link::{announce, jitter, Backoff, Link, LinkError};

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
    pub(super) next_node_status: Instant,
    /// The pod watch: its messages, where to resume it, whether to list first.
    pub(super) watch: Option<Receiver<WatchMsg>>,
    pub(super) pod_rv: Option<String>,
    pub(super) need_list: bool,
    pub(super) next_watch: Instant,
    pub(super) watch_backoff: Backoff,
    /// Mirror pods deleted by us: their late watch events are not news.
    pub(super) deleted: BTreeSet<String>,
    /// Wakes this thread (a watch event, an event recorded).
    pub(super) wake: Arc<dyn Fn() + Send + Sync>,
    pub(super) events: Arc<Recorder>,
    pub(super) post: super::post::PostState,
    pub(super) node_status: Option<(Value, Instant)>,
    pub(super) seen: BTreeMap<Key, Seen>,
    pub(super) written: BTreeMap<Key, Written>,
    pub(super) holds: BTreeMap<Key, Hold>,
    pub(super) reported: BTreeMap<String, MirrorState>,
    pub(super) version: u64,
    pub(super) pods: Vec<Value>,
}

impl<A: Api> Syncer<A> {
    pub fn new(
        api: A,
        s: Settings,
        t: Timing,
        board: Arc<StatusBoard>,
        facts: HostFacts,
        events: Arc<Recorder>,
    ) -> Self {
        let now = Instant::now();
        let wake: Arc<dyn Fn() + Send + Sync> = {
            let board = board.clone();
            Arc::new(move || board.poke())
        };
        events.on_record(wake.clone());
        let link = Link::Down {
            reason: LinkError::NotYet,
            retry_at: now,
            backoff: Backoff::new(t.link_retry),
            ever_up: false,
        };
        let post = super::post::PostState::new(&t, now);
        let watch_backoff = Backoff::new(t.watch_retry);
        Syncer {
            api,
            s,
            t,
            board,
            facts,
            link,
            node_uid: None,
            ready_since: crate::sys::timefmt::now_rfc3339(),
            labels_refused: false,
            lease_rv: None,
            next_lease: now,
            next_node_status: now,
            watch: None,
            pod_rv: None,
            need_list: true,
            next_watch: now,
            watch_backoff,
            deleted: BTreeSet::new(),
            wake,
            events,
            post,
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
        self.save_events(now);
        self.report();
    }

    fn connect(&mut self, now: Instant) -> Result<(), LinkError> {
        self.register_node()?;
        self.write_node_status(now, true)?;
        self.renew_lease(now)?;
        self.list(now)?;
        self.start_watch(now);
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
        self.sync_mirrors(now)?;
        self.post_events(now)
    }

    fn tick(&mut self, now: Instant) -> Result<(), LinkError> {
        if now >= self.next_lease {
            self.renew_lease(now)?;
        }
        if now >= self.next_node_status {
            self.write_node_status(now, false)?;
        }
        self.drain_watch(now);
        if self.need_list {
            self.list(now)?;
            self.start_watch(now);
        } else if self.watch.is_none() && now >= self.next_watch {
            self.start_watch(now);
        }
        self.sync_mirrors(now)?;
        self.post_events(now)
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
        self.watch = None;
        self.need_list = true;
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
                wake = wake.min(self.next_lease).min(self.next_node_status);
                if self.watch.is_none() {
                    wake = wake.min(self.next_watch);
                }
                if let Some(t) = self.next_post(now) {
                    wake = wake.min(t);
                }
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
        if let Some(t) = self.next_save() {
            wake = wake.min(t);
        }
        wake
    }
}
