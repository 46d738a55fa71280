//! The pure step that decides what to do next for one pod: a function of (state, now) that
//! returns actions and when to look again, in the manner of kube-rs' `Action::requeue`.

use super::container::{probe_of, ContainerState, Phase, ProbeKind, ALL_PROBES};
use super::pod::{PodState, SandboxState};
use super::Tick;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SetupSandbox,
    Start {
        index: usize,
        attempt: u32,
    },
    /// The launch of a container took longer than `runtimeRequestTimeout`.
    Abandon {
        index: usize,
    },
    /// A stopped container's exit record did not come in time.
    ExitLost {
        index: usize,
    },
    Stop {
        index: usize,
        grace: Duration,
    },
    Probe {
        index: usize,
        kind: ProbeKind,
    },
    /// Run the container's `postStart` hook.
    PostStart {
        index: usize,
    },
    /// `activeDeadlineSeconds` has run out (once per pod).
    DeadlineExceeded,
    Teardown,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake: Option<Tick>,
}

impl Plan {
    pub fn wake_at(&mut self, t: Tick) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }
}

/// Decides what to do for one pod now.
pub fn plan(s: &PodState, now: Tick) -> Plan {
    let mut p = Plan::default();
    plan_deadlines(&mut p, s, now);
    let past_deadline = s.active_deadline.is_some_and(|d| d <= now);
    if let Some(d) = s.active_deadline.filter(|_| !past_deadline) {
        p.wake_at(d);
    }
    if (past_deadline || s.deadline_exceeded) && !s.terminating {
        if !s.deadline_exceeded {
            p.actions.push(Action::DeadlineExceeded);
        }
        stop_running(&mut p, s, |_| true);
        return p;
    }
    if s.terminating {
        // Sidecars stop once the app and init containers have (the kubelet stops them last).
        let others_busy = s.containers.iter().any(|c| !c.sidecar && c.phase.is_busy());
        stop_running(&mut p, s, |c| !(c.sidecar && others_busy));
        // A sandbox still being set up is torn down only once that job is done: tearing down
        // beside it would leave behind whatever it mounts after the teardown looked.
        if s.all_stopped()
            && !matches!(
                s.sandbox,
                SandboxState::SettingUp | SandboxState::TearingDown | SandboxState::Gone
            )
        {
            p.actions.push(Action::Teardown);
        }
        return p;
    }
    match &s.sandbox {
        SandboxState::Missing => {
            p.actions.push(Action::SetupSandbox);
            return p;
        }
        SandboxState::Failed { retry_at, .. } if *retry_at <= now => {
            p.actions.push(Action::SetupSandbox);
            return p;
        }
        SandboxState::Failed { retry_at, .. } => {
            p.wake_at(*retry_at);
            return p;
        }
        // Whatever still runs in a lost sandbox is stopped before it is set up again, so
        // that a pod's containers never end up in two network namespaces.
        SandboxState::Lost { .. } => {
            stop_running(&mut p, s, |_| true);
            return p;
        }
        SandboxState::Ready(_) => {}
        _ => return p,
    }
    // Init containers, strictly in order; a sidecar lets the next one start once it has
    // started, and holds nothing up once the pod is initialized.
    let initialized = s.regular_inits_done();
    let apps_done = s.apps_done();
    for (i, c) in s.containers.iter().enumerate().filter(|(_, c)| c.init) {
        if c.sidecar {
            if c.phase.can_stop() {
                plan_running(&mut p, s, (i, c), apps_done, now);
                if initialized || s.sidecar_started(c) {
                    continue;
                }
                return p;
            }
            if !c.phase.is_busy() && !s.finished(c) {
                start_or_wait(&mut p, i, c, now);
            }
            if initialized {
                continue;
            }
            return p;
        }
        if s.finished(c) {
            if c.last.as_ref().is_some_and(|t| t.exit_code != 0) {
                return p; // failed for good: the pod is Failed, nothing more runs
            }
            continue;
        }
        if c.phase.can_stop() {
            plan_running(&mut p, s, (i, c), false, now);
            return p;
        }
        if c.phase.is_busy() {
            return p;
        }
        start_or_wait(&mut p, i, c, now);
        return p;
    }
    // A container whose postStart hook has not succeeded holds up the ones after it.
    let mut hooked = false;
    for (i, c) in s.containers.iter().enumerate().filter(|(_, c)| !c.init) {
        if c.phase.can_stop() {
            hooked |= plan_running(&mut p, s, (i, c), false, now);
            continue;
        }
        let has_hook = s
            .spec_of(i)
            .lifecycle
            .as_ref()
            .is_some_and(|l| l.post_start.is_some());
        if hooked || c.phase.is_busy() || s.finished(c) {
            hooked |= has_hook && c.phase.is_starting();
            continue;
        }
        start_or_wait(&mut p, i, c, now);
        hooked |= has_hook;
    }
    p
}

/// What a running container needs: its stop (asked for, or `stop`), else its `postStart`
/// hook until that has succeeded, else its probes (an init container has none). Returns
/// whether its hook is still pending.
fn plan_running(
    p: &mut Plan,
    s: &PodState,
    (index, c): (usize, &ContainerState),
    stop: bool,
    now: Tick,
) -> bool {
    if c.stop_reason.is_some() || stop {
        p.actions.push(Action::Stop {
            index,
            grace: s.grace(),
        });
        return false;
    }
    if c.post_start_pending {
        if !c.post_start_in_flight {
            p.actions.push(Action::PostStart { index });
        }
        return true;
    }
    plan_probes(p, s, index, c, now);
    false
}

/// Stops every running container that `wanted` picks, with the pod's grace period.
fn stop_running(p: &mut Plan, s: &PodState, wanted: impl Fn(&ContainerState) -> bool) {
    for (i, c) in s.containers.iter().enumerate() {
        if c.phase.can_stop() && wanted(c) {
            p.actions.push(Action::Stop {
                index: i,
                grace: s.grace(),
            });
        }
    }
}

/// A launch past its deadline is abandoned, and a stopped container whose exit record is
/// overdue is taken as ended, whatever else happens to the pod.
fn plan_deadlines(p: &mut Plan, s: &PodState, now: Tick) {
    for (index, c) in s.containers.iter().enumerate() {
        let (deadline, action) = match c.phase {
            Phase::Launching { deadline, .. } => (deadline, Action::Abandon { index }),
            Phase::Ended { deadline, .. } => (deadline, Action::ExitLost { index }),
            _ => continue,
        };
        if deadline <= now {
            p.actions.push(action);
        } else {
            p.wake_at(deadline);
        }
    }
}

fn start_or_wait(p: &mut Plan, index: usize, c: &ContainerState, now: Tick) {
    match c.backoff.until {
        Some(until) if until > now => p.wake_at(until),
        _ => p.actions.push(Action::Start {
            index,
            attempt: c.next_attempt(),
        }),
    }
}

fn plan_probes(p: &mut Plan, s: &PodState, index: usize, c: &ContainerState, now: Tick) {
    let spec = s.spec_of(index);
    for kind in ALL_PROBES {
        let Some(_) = probe_of(spec, kind) else {
            continue;
        };
        if kind != ProbeKind::Startup && !c.started {
            continue; // liveness and readiness wait for the startup probe
        }
        if kind == ProbeKind::Startup && c.started {
            continue;
        }
        let track = &c.probes[kind.index()];
        if track.in_flight {
            continue;
        }
        match track.next {
            Some(t) if t <= now => p.actions.push(Action::Probe { index, kind }),
            Some(t) => p.wake_at(t),
            None => {}
        }
    }
}
