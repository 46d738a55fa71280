//! Publishing the observed state on the status board after every change.

use super::Agent;
use crate::status::Shared;

impl Agent {
    pub(super) fn publish(&mut self) {
        let now = self.now();
        let wall = crate::sys::timefmt::now_rfc3339();
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
                crate::reconcile::status::pod_json(p, now, &wall, problem)
            })
            .collect();
        self.ctx.board.publish(Shared {
            pods: items,
            problems: self.problems.clone(),
            start_latency: self.start_latency.clone(),
            log_paths: self.log_paths(),
        });
    }

    /// Where each container's current and previous logs are, for `staticlet logs`.
    fn log_paths(&self) -> Vec<crate::status::LogPaths> {
        let mut out = Vec::new();
        for p in self.pods.values() {
            for c in &p.containers {
                let attempt = c
                    .running
                    .as_ref()
                    .map(|r| r.attempt)
                    .or(c.last.as_ref().map(|t| t.attempt));
                let Some(attempt) = attempt else { continue };
                let file = |a: u32| {
                    self.ctx
                        .layout
                        .log_file(p.pod.namespace(), p.pod.name(), p.uid(), &c.name, a)
                };
                let previous = if c.running.is_some() {
                    c.last.as_ref().map(|t| file(t.attempt))
                } else {
                    attempt.checked_sub(1).map(file)
                };
                out.push(crate::status::LogPaths {
                    namespace: p.pod.namespace().into(),
                    pod: p.pod.name().into(),
                    container: c.name.clone(),
                    current: file(attempt),
                    previous,
                    running: c.running.is_some(),
                });
            }
        }
        out
    }
}
