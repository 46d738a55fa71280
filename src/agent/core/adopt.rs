//! Adoption after a restart: the runtime's inventory becomes the core's state. Every
//! recorded pod whose source is still configured seeds the desired set (so an invalid file
//! at start-up keeps the pod it had); containers whose monitor still runs are adopted (same
//! PIDs, logs continue); exits written while the agent was down are handed back to apply;
//! a start whose end was lost shows as `ContainerStatusUnknown`.

use super::{Core, Now};
use crate::manifest::{Source, StaticPod};
use crate::reconcile::{Phase, PodState, Terminated};
use crate::runtime::{ExitRecord, FoundInstance, Inventory, Running, SweepScope};
use crate::source::SourceKey;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// What adoption hands back to the shell.
#[derive(Debug)]
pub struct Adoption {
    /// Exit records written while the agent was down, to apply as inputs once the sweep
    /// is done.
    pub pending: Vec<ExitRecord>,
    /// What the sweep must keep.
    pub keep: SweepScope,
}

impl Core {
    pub fn adopt(&mut self, inventory: Inventory, now: Now) -> Adoption {
        let mut pending = Vec::new();
        for found in inventory.pods {
            let pod = found.pod;
            let uid = pod.uid().to_string();
            let start_time = pod.seen().unwrap_or_default().to_string();
            let mut st = PodState::new(pod.clone(), start_time);
            st.set_active_deadline(now.tick, now.wall);
            match self.source_of(&pod) {
                Some((key, origin)) => self.desired.seed(key, origin, pod.clone()),
                None => {
                    log::info!(
                        "{}: its source ({}) is no longer configured; stopping it",
                        pod.full_name(),
                        pod.source
                    );
                    st.terminating = true;
                }
            }
            for fc in found.containers {
                let Some(index) = st.containers.iter().position(|c| c.name == fc.name) else {
                    continue;
                };
                if let Some(rec) = fc.record {
                    let c = &mut st.containers[index];
                    c.restart_count = rec.restart_count;
                    c.ever_started = rec.ever_started;
                    c.last = rec.last;
                    c.backoff.delay = rec.backoff_delay_secs.map(Duration::from_secs);
                }
                match fc.latest {
                    Some(FoundInstance::Exited(r, rec)) => {
                        let r = since(r, now);
                        let c = &mut st.containers[index];
                        c.phase = Phase::Running(r);
                        c.ever_started = true;
                        pending.push(rec);
                    }
                    Some(FoundInstance::Running(r)) => {
                        log::info!(
                            "{}: adopted (pid {}, attempt {})",
                            st.container_name(index),
                            r.pid,
                            r.attempt
                        );
                        st.on_adopted(index, since(r, now), now.tick);
                    }
                    Some(FoundInstance::Lost {
                        attempt,
                        started_at,
                    }) => {
                        let c = &mut st.containers[index];
                        c.last = Some(Terminated {
                            attempt,
                            exit_code: 137,
                            signal: None,
                            reason: "ContainerStatusUnknown".into(),
                            message: Some("the container was not running when staticlet started and its exit status was lost".into()),
                            started_at: Some(started_at),
                            finished_at: now.wall_text(),
                        });
                        c.ever_started = true;
                    }
                    None => {}
                }
            }
            self.pods.insert(uid, st);
        }
        // Trials go on; rollbacks hold their candidate off (after the pods were seeded).
        self.saved_rollouts = inventory.rollouts.clone();
        for r in inventory.rollouts {
            self.desired.restore(r);
        }
        // A version replaced by another one found here (its removal was cut short by the
        // restart) goes on being removed; it never starts again meanwhile.
        let seeded = self.desired.desired();
        for p in self.pods.values_mut() {
            if seeded
                .pods
                .get(&p.pod.full_name())
                .is_some_and(|d| d.uid() != p.uid())
                && !p.terminating
            {
                log::info!(
                    "{}: replaced before the restart; stopping it",
                    p.pod.full_name()
                );
                p.terminating = true;
            }
        }
        let running: HashSet<String> = self
            .pods
            .values()
            .flat_map(|p| p.containers.iter().filter_map(|c| c.running()))
            .map(|r| r.id.clone())
            .collect();
        Adoption {
            pending,
            keep: SweepScope::Keep {
                pods: self.pods.keys().cloned().collect(),
                running,
            },
        }
    }

    /// The source key a recorded pod belongs to, and its origin there, if that source is
    /// still configured.
    fn source_of(&self, pod: &StaticPod) -> Option<(SourceKey, PathBuf)> {
        match &pod.source {
            Source::File(path) => {
                let dir = self.config.static_pod_path.as_ref()?;
                (path.starts_with(dir) || path == dir)
                    .then(|| (SourceKey::Dir(dir.clone()), path.clone()))
            }
            Source::Url(url) => {
                if self.config.static_pod_url.as_deref() != Some(url.as_str()) {
                    return None;
                }
                // The same origin the URL source gives the item: the name as written.
                let suffix = format!("-{}", self.config.node_name);
                let name = pod.name().strip_suffix(&suffix).unwrap_or(pod.name());
                let origin = PathBuf::from(format!("{url}#{}/{name}", pod.namespace()));
                Some((SourceKey::Url(url.clone()), origin))
            }
        }
    }
}

/// The instance with its start placed on the monotonic clock: how long ago it started, by
/// the wall clock, before `now`.
fn since(mut r: Running, now: Now) -> Running {
    let ran = crate::sys::timefmt::parse_rfc3339(&r.started_at)
        .and_then(|t| now.wall.duration_since(t).ok())
        .unwrap_or_default();
    r.since = now.tick.saturating_sub(ran);
    r
}
