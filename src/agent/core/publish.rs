//! What the core publishes on the status board after every change: each pod as the kubelet
//! would report it, the manifest problems, the start latency, and where each container's
//! logs are.

use super::{Core, Now};
use crate::manifest::StaticPod;
use crate::status::{LogPaths, Shared};
use std::path::PathBuf;

impl Core {
    /// The board's contents at `now`; `log_file` says where an instance's log is.
    pub fn board(
        &mut self,
        now: Now,
        log_file: impl Fn(&StaticPod, &str, u32) -> PathBuf,
    ) -> Shared {
        let wall = now.wall_text();
        for p in self.pods.values_mut() {
            p.note_ready(&wall);
        }
        let items = self
            .pods
            .values()
            .map(|p| {
                let problem = self
                    .problems
                    .iter()
                    .find(|pr| pr.pod.as_deref() == Some(&p.pod.full_name()))
                    .map(|pr| pr.message.as_str());
                let rolled_back = self.rolled_back_message(p.uid());
                crate::reconcile::status::pod_status_with(
                    p,
                    now.tick,
                    &wall,
                    problem,
                    rolled_back.as_deref(),
                )
            })
            .collect();
        Shared {
            pods: items,
            problems: self.problems.clone(),
            start_latency: self.start_latency.clone(),
            rollbacks: self.rollbacks,
            log_paths: self.log_paths(log_file),
        }
    }

    /// Where each container's current and previous logs are, for `staticlet logs`.
    fn log_paths(&self, log_file: impl Fn(&StaticPod, &str, u32) -> PathBuf) -> Vec<LogPaths> {
        let mut out = Vec::new();
        for p in self.pods.values() {
            for c in &p.containers {
                let running = c.running();
                let attempt = running
                    .map(|r| r.attempt)
                    .or(c.last.as_ref().map(|t| t.attempt));
                let Some(attempt) = attempt else { continue };
                let file = |a: u32| log_file(&p.pod, &c.name, a);
                let previous = if running.is_some() {
                    c.last.as_ref().map(|t| file(t.attempt))
                } else {
                    attempt.checked_sub(1).map(file)
                };
                out.push(LogPaths {
                    namespace: p.pod.namespace().into(),
                    pod: p.pod.name().into(),
                    container: c.name.clone(),
                    current: file(attempt),
                    previous,
                    running: running.is_some(),
                });
            }
        }
        out
    }
}
