//! The health-gated rollback's records: a candidate on trial, a version held off, the trial
//! length a pod asks for, and what of a rollout outlives an agent restart.

use crate::manifest::{StaticPod, ROLLBACK_AFTER};
use crate::source::SourceKey;
use std::path::PathBuf;
use std::time::Duration;

/// A candidate on trial: the version it replaced (the last good one), and how long it has.
#[derive(Debug, Clone)]
pub struct Trial {
    pub previous: StaticPod,
    pub after: Duration,
}

/// A version that was rolled back, held off until the manifest changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub uid: String,
    pub reason: String,
}

/// The trial length a pod asks for: its annotation (a duration such as `120s`; `0` or `off`
/// turns it off for this pod), else the config's default.
pub fn rollback_after(pod: &StaticPod, default: Option<Duration>) -> Option<Duration> {
    match pod
        .pod
        .metadata
        .annotations
        .get(ROLLBACK_AFTER)
        .map(|v| v.trim())
    {
        Some("0" | "off" | "") => None,
        Some(v) => crate::sys::timefmt::parse_duration(v).filter(|d| !d.is_zero()),
        None => default,
    }
}

/// What is kept of a rollout across an agent restart: the last good version, the candidate
/// and whether it is on trial or was rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub key: SourceKey,
    pub origin: PathBuf,
    pub previous: StaticPod,
    pub candidate: String,
    /// On trial for this long; `None`: rolled back (and `held` says why).
    pub after: Option<Duration>,
    pub held: Option<Held>,
}
