//! The desired pod set: the merge of every source's latest snapshot.
//!
//! This is where staticlet does better than the kubelet: a manifest that becomes invalid
//! keeps its last good pod (the error is reported, the pod keeps running), and a pod is only
//! removed when its source, read successfully, no longer has it. Duplicate names across files
//! are resolved by file order, and the later file is reported naming both.
//!
//! It goes further with a health-gated rollback (opt-in): a changed manifest whose pod asks
//! for it (`staticlet.dev/rollback-after`, or the config's `rollbackAfter`) is a candidate
//! on trial while the last good version is kept here; the core judges the candidate's health
//! and either promotes it or rolls back, and a version rolled back is held off until the
//! manifest changes again.

use crate::manifest::StaticPod;
use crate::source::{Snapshot, SourceKey};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

pub use rollout::{rollback_after, Held, Rollout, Trial};

mod rollout;

#[derive(Debug, Clone, Default)]
struct OriginState {
    good: Option<StaticPod>,
    error: Option<String>,
    /// `good` is a candidate on trial.
    trial: Option<Trial>,
    /// `good` is the version brought back; this one is held off.
    held: Option<Held>,
}

#[derive(Debug, Default)]
struct SourceState {
    complete: bool,
    origins: BTreeMap<PathBuf, OriginState>,
    /// What is wrong with the source as a whole (its pods are kept meanwhile).
    problem: Option<String>,
}

/// A manifest problem as users see it in the log, `get pods` and the status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub origin: String,
    /// The pod still running from the last good version of this manifest, if any.
    pub pod: Option<String>,
    pub message: String,
    /// The source as a whole could not be used (a refused URL body); its pods are kept and
    /// the message says so.
    pub whole_source: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub pods: BTreeMap<String, StaticPod>,
    pub problems: Vec<Problem>,
    /// False while any configured source has not been read yet; pods not in the set must
    /// not be removed until it is true.
    pub complete: bool,
}

#[derive(Default)]
pub struct DesiredSet {
    sources: BTreeMap<SourceKey, SourceState>,
    expected: Vec<SourceKey>,
    seen: HashMap<String, String>,
    /// The config's `rollbackAfter`.
    rollback_default: Option<Duration>,
    /// Counts the changes that may have changed [`DesiredSet::rollouts`].
    generation: u64,
}

impl DesiredSet {
    /// `expected` lists the configured sources; the set is complete once each has reported.
    pub fn new(expected: Vec<SourceKey>) -> Self {
        DesiredSet {
            expected,
            ..Default::default()
        }
    }

    /// With the config's default trial for the health-gated rollback.
    pub fn with_rollback(mut self, after: Option<Duration>) -> Self {
        self.rollback_default = after;
        self
    }

    fn origins(&self) -> impl Iterator<Item = (&SourceKey, &PathBuf, &OriginState)> {
        self.sources
            .iter()
            .flat_map(|(k, s)| s.origins.iter().map(move |(o, st)| (k, o, st)))
    }

    /// The origin whose current version is `uid`.
    fn origin_of(&self, uid: &str) -> Option<&OriginState> {
        self.origins()
            .map(|(_, _, o)| o)
            .find(|o| o.good.as_ref().is_some_and(|p| p.uid() == uid))
    }

    fn origin_of_mut(&mut self, uid: &str) -> Option<&mut OriginState> {
        self.generation += 1;
        self.sources
            .values_mut()
            .flat_map(|s| s.origins.values_mut())
            .find(|o| o.good.as_ref().is_some_and(|p| p.uid() == uid))
    }

    /// Whether any candidate is on trial.
    pub fn has_trials(&self) -> bool {
        self.origins().any(|(_, _, o)| o.trial.is_some())
    }

    /// The trial of the candidate `uid`, if it is one.
    pub fn trial_of(&self, uid: &str) -> Option<&Trial> {
        self.origin_of(uid)?.trial.as_ref()
    }

    /// Changes with every change that may change [`DesiredSet::rollouts`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The candidate `uid` passed its trial: it is the last good version now.
    pub fn promote(&mut self, uid: &str) {
        if let Some(o) = self.origin_of_mut(uid) {
            o.trial = None;
        }
    }

    /// The candidate `uid` failed its trial: its last good version comes back and it is held
    /// off until the manifest changes. Returns the version brought back.
    pub fn roll_back(&mut self, uid: &str, reason: &str) -> Option<StaticPod> {
        let o = self.origin_of_mut(uid)?;
        let trial = o.trial.take()?;
        o.good = Some(trial.previous.clone());
        o.held = Some(Held {
            uid: uid.to_string(),
            reason: reason.to_string(),
        });
        Some(trial.previous)
    }

    /// Why the version running as `uid` replaced a candidate, if it did.
    pub fn held_for(&self, uid: &str) -> Option<&Held> {
        self.origin_of(uid)?.held.as_ref()
    }

    /// Every rollout in progress or rolled back, to keep across a restart.
    pub fn rollouts(&self) -> Vec<Rollout> {
        self.origins()
            .filter_map(|(k, origin, o)| {
                let good = o.good.as_ref()?;
                match (&o.trial, &o.held) {
                    (Some(t), _) => Some(Rollout {
                        key: k.clone(),
                        origin: origin.clone(),
                        previous: t.previous.clone(),
                        candidate: good.uid().to_string(),
                        after: Some(t.after),
                        held: None,
                    }),
                    (None, Some(h)) => Some(Rollout {
                        key: k.clone(),
                        origin: origin.clone(),
                        previous: good.clone(),
                        candidate: h.uid.clone(),
                        after: None,
                        held: Some(h.clone()),
                    }),
                    (None, None) => None,
                }
            })
            .collect()
    }

    /// Restores a rollout kept across a restart (after the adopted pods were seeded): a
    /// trial goes on if its candidate is what was seeded; a rollback holds its candidate off
    /// and brings the last good version back.
    pub fn restore(&mut self, r: Rollout) {
        self.generation += 1;
        let state = self.sources.entry(r.key).or_default();
        let o = state.origins.entry(r.origin).or_default();
        match (r.after, r.held) {
            (Some(after), _) => {
                if o.good.as_ref().is_some_and(|p| p.uid() == r.candidate) {
                    o.trial = Some(Trial {
                        previous: r.previous,
                        after,
                    });
                } else if o.good.is_none() {
                    o.good = Some(r.previous);
                }
            }
            (None, Some(held)) => {
                if let Some(seen) = r.previous.seen() {
                    self.seen
                        .insert(r.previous.uid().to_string(), seen.to_string());
                }
                o.good = Some(r.previous);
                o.held = Some(held);
                o.trial = None;
            }
            (None, None) => {}
        }
    }

    /// Seeds the last good version of a manifest (from the agent's saved state), so an
    /// invalid file at start-up keeps the pod it had before the restart.
    pub fn seed(&mut self, key: SourceKey, origin: PathBuf, pod: StaticPod) {
        if let Some(seen) = pod.seen() {
            self.seen.insert(pod.uid().to_string(), seen.to_string());
        }
        let state = self.sources.entry(key).or_default();
        let good = &mut state.origins.entry(origin).or_default().good;
        // Two versions of one manifest were found (the old one's removal was cut short): the
        // one seen last is what the source said last.
        if good.as_ref().is_none_or(|g| g.seen() <= pod.seen()) {
            *good = Some(pod);
        }
    }

    /// Applies a snapshot.
    pub fn apply(&mut self, snap: Snapshot, now: &str) {
        self.generation += 1;
        let state = self.sources.entry(snap.key.clone()).or_default();
        state.problem = snap.problem;
        if !snap.complete && !state.complete {
            // A source that has never been read keeps whatever was seeded.
            return;
        }
        state.complete = true;
        let mut next: BTreeMap<PathBuf, OriginState> = BTreeMap::new();
        for entry in snap.entries {
            let previous = state.origins.remove(&entry.origin).unwrap_or_default();
            let new_state = match entry.result {
                // The version rolled back is still what the source says: held off.
                Ok(pod) if previous.held.as_ref().is_some_and(|h| h.uid == pod.uid()) => {
                    OriginState {
                        error: None,
                        ..previous
                    }
                }
                Ok(mut pod) => {
                    let seen = self
                        .seen
                        .entry(pod.uid().to_string())
                        .or_insert_with(|| now.to_string());
                    pod.set_seen(seen);
                    // A changed manifest is on trial if it asks for one, against the last
                    // version that passed (not a candidate it replaces).
                    let trial = match &previous.good {
                        Some(old) if old.uid() == pod.uid() => previous.trial,
                        Some(old) => {
                            rollback_after(&pod, self.rollback_default).map(|after| Trial {
                                previous: previous
                                    .trial
                                    .map_or_else(|| old.clone(), |t| t.previous),
                                after,
                            })
                        }
                        None => None,
                    };
                    OriginState {
                        good: Some(pod),
                        error: None,
                        trial,
                        held: None,
                    }
                }
                Err(err) => OriginState {
                    error: Some(err.to_string()),
                    ..previous
                },
            };
            next.insert(entry.origin, new_state);
        }
        state.origins = next;
        let live: std::collections::HashSet<String> = self
            .sources
            .values()
            .flat_map(|s| s.origins.values())
            .filter_map(|o| o.good.as_ref().map(|p| p.uid().to_string()))
            .collect();
        self.seen.retain(|uid, _| live.contains(uid));
    }

    pub fn desired(&self) -> Desired {
        let mut out = Desired {
            complete: self
                .expected
                .iter()
                .all(|k| self.sources.get(k).is_some_and(|s| s.complete)),
            ..Default::default()
        };
        let mut first_origin: HashMap<String, String> = HashMap::new();
        for (key, state) in &self.sources {
            if let Some(message) = &state.problem {
                out.problems.push(Problem {
                    origin: key.to_string(),
                    pod: None,
                    message: message.clone(),
                    whole_source: true,
                });
            }
            for (origin, o) in &state.origins {
                let origin = origin.display().to_string();
                if let Some(e) = &o.error {
                    out.problems.push(Problem {
                        origin: origin.clone(),
                        pod: o.good.as_ref().map(|p| p.full_name()),
                        message: e.clone(),
                        whole_source: false,
                    });
                }
                let Some(pod) = &o.good else { continue };
                let name = pod.full_name();
                match first_origin.get(&name) {
                    Some(first) => out.problems.push(Problem {
                        origin: origin.clone(),
                        pod: None,
                        message: format!(
                            "{}: metadata.name: Duplicate value: pod {name} is already defined by {}; this file is ignored",
                            crate::sys::logging::escape(&origin),
                            crate::sys::logging::escape(first)
                        ),
                        whole_source: false,
                    }),
                    None => {
                        first_origin.insert(name.clone(), origin.clone());
                        out.pods.insert(name, pod.clone());
                    }
                }
            }
        }
        out
    }
}

/// Logs each problem that is new since `before` (one line per error), and each manifest that
/// is fine again.
pub fn log_problem_changes(before: &[Problem], after: &[Problem]) {
    for p in after.iter().filter(|p| !before.contains(p)) {
        if p.whole_source {
            log::warn!("{}", p.message);
            continue;
        }
        for line in p.message.lines() {
            match &p.pod {
                Some(pod) => log::warn!(
                    "invalid manifest, keeping the last good version of {pod} running: {line}"
                ),
                None => log::warn!("invalid manifest, no pod started from it: {line}"),
            }
        }
    }
    for p in before
        .iter()
        .filter(|p| !after.iter().any(|a| a.origin == p.origin))
    {
        log::info!("manifest {} is fine again", p.origin);
    }
}

#[cfg(test)]
mod tests;
