//! Keeping the pod map in line with the desired set: new pods are added; removed or
//! replaced ones are marked terminating. A pod is only removed when its source, read
//! successfully, no longer has it.

use super::{Core, Now, Output};
use crate::agent::event::EventKind;
use crate::desired::log_problem_changes;
use crate::reconcile::PodState;

impl Core {
    pub(super) fn sync_desired(&mut self, now: Now, out: &mut Output) {
        let desired = self.desired.desired();
        log_problem_changes(&self.problems, &desired.problems);
        // A manifest that turned bad while its last good version runs: staticlet's own
        // event reason (the kubelet would stop the pod instead).
        for pr in desired
            .problems
            .iter()
            .filter(|pr| pr.pod.is_some() && !self.problems.contains(pr))
        {
            if let Some(p) = self
                .pods
                .values()
                .find(|p| !p.terminating && pr.pod.as_deref() == Some(p.pod.full_name().as_str()))
            {
                out.commands.push(super::event(
                    p,
                    None,
                    EventKind::Warning,
                    "FailedManifest",
                    format!(
                        "{}: {}; the last good version keeps running",
                        pr.origin, pr.message
                    ),
                    now,
                ));
            }
        }
        self.problems = desired.problems.clone();
        let wanted: std::collections::HashSet<&str> =
            desired.pods.values().map(|p| p.uid()).collect();
        for p in self.pods.values_mut() {
            let name = p.pod.full_name();
            if !p.terminating
                && !wanted.contains(p.uid())
                && (desired.complete || desired.pods.contains_key(&name))
            {
                log::info!(
                    "{name}: manifest {}; stopping it",
                    if desired.pods.contains_key(&name) {
                        "changed"
                    } else {
                        "removed"
                    }
                );
                p.terminating = true;
            }
        }
        for pod in desired.pods.values() {
            if !self.pods.contains_key(pod.uid()) {
                log::info!("{}: new pod from {}", pod.full_name(), pod.source);
                let mut st = PodState::new(pod.clone(), now.wall_text());
                st.set_active_deadline(now.tick, now.wall);
                self.pods.insert(pod.uid().to_string(), st);
            }
        }
    }
}
