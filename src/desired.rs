//! The desired pod set: the merge of every source's latest snapshot.
//!
//! This is where staticlet does better than the kubelet: a manifest that becomes invalid
//! keeps its last good pod (the error is reported, the pod keeps running), and a pod is only
//! removed when its source, read successfully, no longer has it. Duplicate names across files
//! are resolved by file order, and the later file is reported naming both.

use crate::manifest::StaticPod;
use crate::source::{Snapshot, SourceKey};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
struct OriginState {
    good: Option<StaticPod>,
    error: Option<String>,
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
}

impl DesiredSet {
    /// `expected` lists the configured sources; the set is complete once each has reported.
    pub fn new(expected: Vec<SourceKey>) -> Self {
        DesiredSet {
            expected,
            ..Default::default()
        }
    }

    /// Seeds the last good version of a manifest (from the agent's saved state), so an
    /// invalid file at start-up keeps the pod it had before the restart.
    pub fn seed(&mut self, key: SourceKey, origin: PathBuf, pod: StaticPod) {
        if let Some(seen) = pod.seen() {
            self.seen.insert(pod.uid().to_string(), seen.to_string());
        }
        let state = self.sources.entry(key).or_default();
        state.origins.entry(origin).or_default().good = Some(pod);
    }

    /// Applies a snapshot.
    pub fn apply(&mut self, snap: Snapshot, now: &str) {
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
                Ok(mut pod) => {
                    let seen = self
                        .seen
                        .entry(pod.uid().to_string())
                        .or_insert_with(|| now.to_string());
                    pod.set_seen(seen);
                    OriginState {
                        good: Some(pod),
                        error: None,
                    }
                }
                Err(err) => OriginState {
                    good: previous.good,
                    error: Some(err.to_string()),
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
