//! Applying what happened to one pod (a sandbox set up, a container created, started,
//! failed, ended, stopped, probed): pure state transitions, each guarded by the container's
//! phase so that a late or stale report (an older attempt, a launch already abandoned)
//! changes nothing.

use super::backoff::Backoff;
use super::container::{probe_of, Phase, ProbeKind, ProbeTrack, StartFailure, ALL_PROBES};
use super::pod::{PodState, SandboxState};
use super::{secs, Tick};
use crate::runtime::podsetup::Sandbox;
use crate::runtime::{ExitRecord, Running, Terminated};
use std::time::Duration;

impl PodState {
    pub fn on_setup(&mut self, sandbox: Sandbox) {
        self.sandbox = SandboxState::Ready(sandbox);
        self.sandbox_backoff = Backoff::default();
    }

    pub fn on_setup_failed(&mut self, message: String, now: Tick) {
        let retry_at = self.sandbox_backoff.failed(now, now);
        self.sandbox = SandboxState::Failed { message, retry_at };
    }

    /// A start was decided at `now`: the image and bundle are being made.
    pub fn on_creating(&mut self, index: usize, attempt: u32, now: Tick) {
        self.containers[index].phase = Phase::Creating {
            attempt,
            since: now,
        };
    }

    /// The instance is created; the runtime launches it, abandoned after `timeout`. False
    /// for a report about an attempt no longer in flight.
    pub fn on_created(&mut self, index: usize, attempt: u32, now: Tick, timeout: Duration) -> bool {
        let c = &mut self.containers[index];
        match c.phase {
            Phase::Creating { attempt: a, since } if a == attempt => {
                c.phase = Phase::Launching {
                    attempt,
                    since,
                    deadline: now + timeout,
                };
                true
            }
            _ => false,
        }
    }

    /// The launch of `index` is being abandoned; returns its attempt.
    pub fn on_abandoning(&mut self, index: usize) -> Option<u32> {
        let c = &mut self.containers[index];
        let Phase::Launching { attempt, .. } = c.phase else {
            return None;
        };
        c.phase = Phase::Abandoning { attempt };
        Some(attempt)
    }

    pub fn on_started(&mut self, index: usize, mut running: Running, now: Tick) {
        running.since = now;
        let spec = self.spec_of(index).clone();
        let c = &mut self.containers[index];
        if c.ever_started {
            c.restart_count += 1;
        }
        c.ever_started = true;
        c.waiting = None;
        c.stop_reason = None;
        c.phase = Phase::Running(running);
        c.post_start_pending = spec
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.post_start.is_some());
        c.post_start_in_flight = false;
        c.started = spec.startup_probe.is_none();
        c.ready = spec.readiness_probe.is_none() && c.started && !c.post_start_pending;
        for kind in ALL_PROBES {
            c.probes[kind.index()] = ProbeTrack {
                next: probe_of(&spec, kind).map(|pr| now + secs(pr.initial_delay())),
                ..Default::default()
            };
        }
    }

    /// The `postStart` hook of `attempt` is running.
    pub fn on_post_start(&mut self, index: usize) {
        self.containers[index].post_start_in_flight = true;
    }

    /// The `postStart` hook of `attempt` ended; a failed one stops the container (the
    /// kubelet kills it and restarts it as its policy says). Returns whether it applied.
    pub fn on_post_started(
        &mut self,
        index: usize,
        attempt: u32,
        success: bool,
        message: &str,
    ) -> bool {
        let readiness = self.spec_of(index).readiness_probe.is_none();
        let c = &mut self.containers[index];
        if c.phase.running().is_none_or(|r| r.attempt != attempt) || !c.post_start_in_flight {
            return false;
        }
        c.post_start_in_flight = false;
        c.post_start_pending = false;
        if success {
            c.ready = readiness && c.started;
        } else {
            c.stop_reason = Some(format!("postStart hook failed: {message}"));
        }
        true
    }

    /// A container found running when the agent started: probed again from now on (not
    /// before its initial delay), ready only once its probes say so, no restart counted.
    pub fn on_adopted(&mut self, index: usize, running: Running, now: Tick) {
        let spec = self.spec_of(index).clone();
        let c = &mut self.containers[index];
        let since = running.since;
        c.ever_started = true;
        c.phase = Phase::Running(running);
        c.started = spec.startup_probe.is_none();
        c.ready = spec.readiness_probe.is_none() && c.started;
        for kind in ALL_PROBES {
            c.probes[kind.index()] = ProbeTrack {
                next: probe_of(&spec, kind).map(|pr| now.max(since + secs(pr.initial_delay()))),
                ..Default::default()
            };
        }
    }

    /// A start that did not produce a running container.
    pub fn on_start_failed(&mut self, index: usize, failure: StartFailure, now: Tick, wall: &str) {
        let c = &mut self.containers[index];
        c.phase = Phase::Idle;
        if failure.ran {
            if c.ever_started {
                c.restart_count += 1;
            }
            c.ever_started = true;
            c.last = Some(Terminated {
                attempt: c.restart_count,
                exit_code: 128,
                signal: None,
                reason: "StartError".into(),
                message: Some(failure.message.clone()),
                started_at: None,
                finished_at: wall.to_string(),
            });
        }
        c.backoff.failed(now, now);
        c.waiting = Some((failure.reason, failure.message));
    }

    /// A container instance ended. Stale records (an older attempt) are ignored; returns
    /// whether it was the running instance.
    pub fn on_exit(&mut self, index: usize, rec: &ExitRecord, now: Tick) -> bool {
        let c = &mut self.containers[index];
        let Some(run) = c.phase.running().filter(|r| r.attempt == rec.attempt) else {
            return false;
        };
        let ran_for = now.saturating_sub(run.since);
        let reason = if rec.oom_killed {
            "OOMKilled"
        } else if rec.error.is_some() {
            "StartError"
        } else if rec.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        c.last = Some(Terminated {
            attempt: rec.attempt,
            exit_code: rec.exit_code,
            signal: rec.signal,
            reason: reason.into(),
            message: rec.error.clone().or_else(|| c.stop_reason.clone()),
            started_at: rec.started_at.clone(),
            finished_at: rec.finished_at.clone(),
        });
        c.phase = Phase::Idle;
        c.started = false;
        c.ready = false;
        c.post_start_pending = false;
        c.post_start_in_flight = false;
        c.stop_reason = None;
        c.probes = Default::default();
        c.backoff.exited(now, ran_for);
        true
    }

    /// A stop is in flight; returns the instance being stopped.
    pub fn on_stopping(&mut self, index: usize) -> Option<Running> {
        let c = &mut self.containers[index];
        let Phase::Running(r) = std::mem::take(&mut c.phase) else {
            return None;
        };
        c.phase = Phase::Stopping(r.clone());
        Some(r)
    }

    /// The stop is done. Its exit record normally comes first; if the instance is gone
    /// but its record has not come yet, it is waited for until `now + wait`; if the
    /// instance is still there, it counts as running again, so the stop is tried again.
    pub fn on_stopped(&mut self, index: usize, gone: bool, now: Tick, wait: Duration) {
        let c = &mut self.containers[index];
        match std::mem::take(&mut c.phase) {
            Phase::Stopping(running) if gone => {
                c.phase = Phase::Ended {
                    running,
                    deadline: now + wait,
                }
            }
            Phase::Stopping(r) => c.phase = Phase::Running(r),
            other => c.phase = other,
        }
    }

    /// A stopped instance whose exit record never came: it ended with an unknown status.
    /// Returns the record that stands for it.
    pub fn on_exit_lost(&mut self, index: usize, now: Tick, wall: &str) -> Option<ExitRecord> {
        let c = &self.containers[index];
        let Phase::Ended { running, .. } = &c.phase else {
            return None;
        };
        let rec = ExitRecord {
            id: running.id.clone(),
            pod_uid: self.uid().to_string(),
            container: c.name.clone(),
            attempt: running.attempt,
            started_at: Some(running.started_at.clone()),
            finished_at: wall.to_string(),
            exit_code: 137,
            signal: None,
            oom_killed: false,
            error: None,
        };
        self.on_exit(index, &rec, now);
        if let Some(t) = self.containers[index].last.as_mut() {
            t.reason = "ContainerStatusUnknown".into();
            t.message = Some("the container was stopped and its exit status was lost".into());
        }
        Some(rec)
    }

    pub fn on_probe_started(&mut self, index: usize, kind: ProbeKind) {
        self.containers[index].probes[kind.index()].in_flight = true;
    }

    /// A probe answered; returns why the container must be restarted, if it must.
    pub fn on_probe(
        &mut self,
        index: usize,
        kind: ProbeKind,
        success: bool,
        message: &str,
        now: Tick,
    ) -> Option<String> {
        let spec = self.spec_of(index).clone();
        let probe = probe_of(&spec, kind)?;
        let c = &mut self.containers[index];
        c.running()?;
        let t = &mut c.probes[kind.index()];
        t.in_flight = false;
        t.next = Some(now + secs(probe.period()));
        if success {
            t.successes += 1;
            t.failures = 0;
        } else {
            t.failures += 1;
            t.successes = 0;
        }
        let (ok, failed) = (
            t.successes >= probe.success_threshold(),
            t.failures >= probe.failure_threshold(),
        );
        match kind {
            ProbeKind::Startup if ok => {
                c.started = true;
                c.ready = spec.readiness_probe.is_none();
                for k in [ProbeKind::Liveness, ProbeKind::Readiness] {
                    if let Some(pr) = probe_of(&spec, k) {
                        c.probes[k.index()].next = Some(now + secs(pr.initial_delay()));
                    }
                }
            }
            ProbeKind::Readiness if ok => c.ready = true,
            ProbeKind::Readiness if failed => c.ready = false,
            ProbeKind::Liveness | ProbeKind::Startup if failed => {
                let why = format!("{} probe failed: {message}", kind.name());
                c.stop_reason = Some(why.clone());
                return Some(why);
            }
            _ => {}
        }
        None
    }
}
