//! The state of the link to the API server, and the backoff with jitter that every retry of
//! the sync uses (reconnects, refused mirror pods, the watch, events), so a fleet that lost
//! its API server does not come back all at once.

use std::time::{Duration, Instant};

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
pub fn announce(old: Option<&LinkError>, new: &LinkError) -> bool {
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

pub enum Link {
    Down {
        reason: LinkError,
        retry_at: Instant,
        backoff: Backoff,
        ever_up: bool,
    },
    Up,
}
