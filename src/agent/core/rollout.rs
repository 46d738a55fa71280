//! The health-gated rollback: judging each candidate on trial (see `crate::desired`).
//!
//! A candidate passes when every container is Ready (pods with a readiness probe: as soon as
//! they are), or, without readiness probes, when its containers have run to the end of the
//! trial without a restart. It fails at the first restart (a crash loop starts with one), an
//! init container that failed for good, or at the end of the trial without having passed
//! (an image that cannot be pulled, a start error, readiness never reached). The trial is
//! counted from the candidate's start time, which survives an agent restart.

use super::{event, Core, Now, Output};
use crate::agent::event::EventKind::{Normal, Warning};
use crate::reconcile::{PodState, Tick};

enum Verdict {
    Pass,
    Fail(String),
    Wait(Tick),
}

fn judge(p: &PodState, deadline: Tick, after: std::time::Duration, now: Tick) -> Verdict {
    for (i, c) in p.containers.iter().enumerate() {
        if c.restart_count > 0 {
            let how = c.last.as_ref().map_or(String::new(), |t| {
                format!(" (exit code {}, {})", t.exit_code, t.reason)
            });
            return Verdict::Fail(format!("container {} restarted{how}", p.spec_of(i).name));
        }
    }
    if p.init_failed() {
        return Verdict::Fail("an init container failed".into());
    }
    let probed = p
        .containers
        .iter()
        .enumerate()
        .any(|(i, _)| p.spec_of(i).readiness_probe.is_some());
    let running = p
        .containers
        .iter()
        .filter(|c| !c.init || c.sidecar)
        .all(|c| c.running().is_some());
    if probed && p.ready() {
        return Verdict::Pass;
    }
    if now < deadline {
        return Verdict::Wait(deadline);
    }
    if !probed && running {
        return Verdict::Pass;
    }
    // Why it is not healthy, from the first container that says.
    let why = p
        .containers
        .iter()
        .find_map(|c| {
            c.waiting
                .as_ref()
                .map(|(reason, message)| format!("container {}: {reason}: {message}", c.name))
                .or_else(|| {
                    (c.running().is_none()).then(|| format!("container {} is not running", c.name))
                })
                .or_else(|| (!c.ready).then(|| format!("container {} is not ready", c.name)))
        })
        .unwrap_or_else(|| "not healthy".into());
    Verdict::Fail(format!(
        "not {} within {}s: {why}",
        if probed { "Ready" } else { "running" },
        after.as_secs()
    ))
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

impl Core {
    /// Judges every candidate on trial: promotes those that passed, rolls back those that
    /// failed (the pod set follows at once), and asks to be woken at the next trial's end.
    pub(super) fn judge_trials(&mut self, now: Now, out: &mut Output) {
        let mut changed = false;
        let uids: Vec<String> = if self.desired.has_trials() {
            self.pods
                .values()
                .filter(|p| !p.terminating)
                .map(|p| p.uid().to_string())
                .collect()
        } else {
            Vec::new()
        };
        for uid in uids {
            let Some(trial) = self.desired.trial_of(&uid).cloned() else {
                continue;
            };
            let Some(p) = self.pods.get_mut(&uid) else {
                continue;
            };
            let deadline = *p.trial_deadline.get_or_insert_with(|| {
                let elapsed = crate::sys::timefmt::parse_rfc3339(&p.start_time)
                    .and_then(|t| now.wall.duration_since(t).ok())
                    .unwrap_or_default();
                now.tick + trial.after.saturating_sub(elapsed)
            });
            let p = &self.pods[&uid];
            let name = p.pod.full_name();
            let previous = short(trial.previous.uid()).to_string();
            match judge(p, deadline, trial.after, now.tick) {
                Verdict::Wait(t) => out.wake_at(t),
                Verdict::Pass => {
                    log::info!(
                        "{name}: version {} passed its trial and replaces {previous} as the last good version",
                        short(&uid)
                    );
                    out.commands.push(event(
                        p,
                        None,
                        Normal,
                        "RolloutPromoted",
                        format!(
                            "version {} is healthy; it is the last good version now",
                            short(&uid)
                        ),
                        now,
                    ));
                    self.desired.promote(&uid);
                    changed = true;
                }
                Verdict::Fail(reason) => {
                    log::warn!(
                        "{name}: version {} failed its trial ({reason}); rolling back to version {previous}, and holding {} off until the manifest changes",
                        short(&uid),
                        short(&uid)
                    );
                    out.commands.push(event(
                        p,
                        None,
                        Warning,
                        "RolledBack",
                        format!(
                            "version {} failed its trial ({reason}); back to version {previous}",
                            short(&uid)
                        ),
                        now,
                    ));
                    self.desired.roll_back(&uid, &reason);
                    self.rollbacks += 1;
                    changed = true;
                }
            }
        }
        if changed {
            self.sync_desired(now, out);
        }
        // Only when the desired set changed since the last look: not on every pass.
        let generation = self.desired.generation();
        if self.rollouts_seen == Some(generation) {
            return;
        }
        self.rollouts_seen = Some(generation);
        let rollouts = self.desired.rollouts();
        if rollouts != self.saved_rollouts {
            out.commands
                .push(super::Command::SaveRollouts(rollouts.clone()));
            self.saved_rollouts = rollouts;
        }
    }

    /// The condition message for the version running as `uid`, if it replaced a candidate.
    pub(super) fn rolled_back_message(&self, uid: &str) -> Option<String> {
        let held = self.desired.held_for(uid)?;
        Some(format!(
            "version {} was rolled back: {}; version {} runs until the manifest changes",
            short(&held.uid),
            held.reason,
            short(uid)
        ))
    }
}
