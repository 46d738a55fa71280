//! The reconciler: one pod's state, and the pure step that decides what to do next.
//!
//! [`plan`] is a function of (state, now) that returns actions and when to look again, in
//! the manner of kube-rs' `Action::requeue`. Events (a container started, exited, a probe
//! answered) are applied with the `on_*` methods, also pure. The agent executes the actions
//! against the real runtime; the tests drive the same code with a manual clock.

pub mod backoff;
pub mod status;

use crate::manifest::pod::{Container, Probe};
use crate::manifest::StaticPod;
use crate::runtime::podsetup::Sandbox;
use crate::runtime::ExitRecord;
use backoff::Backoff;
use std::time::Duration;

/// Monotonic time since the agent started; the clock is passed in, never read here.
pub type Tick = Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub attempt: u32,
    pub id: String,
    pub pid: i32,
    pub monitor_pid: i32,
    pub started_at: String,
    pub since: Tick,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    pub attempt: u32,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

/// A start that did not produce a running container.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
    /// The container was created and failed (counts as a run, restartCount goes up), as
    /// opposed to never created (image missing): the kubelet's StartError vs ErrImage*.
    pub ran: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeTrack {
    pub next: Option<Tick>,
    pub successes: i64,
    pub failures: i64,
    pub in_flight: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerState {
    pub name: String,
    pub init: bool,
    pub restart_count: u32,
    /// Whether any instance was ever started (the next one is then a restart).
    pub ever_started: bool,
    pub running: Option<Running>,
    pub starting: bool,
    pub stopping: bool,
    /// Why a running container is being stopped (liveness failure, pod removal).
    pub stop_reason: Option<String>,
    pub last: Option<Terminated>,
    pub waiting: Option<(String, String)>,
    pub backoff: Backoff,
    pub started: bool,
    pub ready: bool,
    pub probes: [ProbeTrack; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub enum SandboxState {
    Missing,
    SettingUp,
    Ready(Sandbox),
    Failed { message: String, retry_at: Tick },
    TearingDown,
    Gone,
}

#[derive(Debug, Clone)]
pub struct PodState {
    /// Shared with every action in flight: a pod with hundreds of containers is one copy,
    /// not one per start, probe and stop.
    pub pod: std::sync::Arc<StaticPod>,
    pub containers: Vec<ContainerState>,
    pub sandbox: SandboxState,
    pub sandbox_backoff: Backoff,
    pub terminating: bool,
    pub start_time: String,
    /// The value of the Ready and ContainersReady conditions and when it last changed
    /// (their `lastTransitionTime`); set by [`PodState::note_ready`].
    pub ready_since: Option<(bool, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SetupSandbox,
    Start { index: usize, attempt: u32 },
    Stop { index: usize, grace: Duration },
    Probe { index: usize, kind: ProbeKind },
    Teardown,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake: Option<Tick>,
}

impl Plan {
    fn wake_at(&mut self, t: Tick) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }
}

const ALL_PROBES: [ProbeKind; 3] = [
    ProbeKind::Startup,
    ProbeKind::Liveness,
    ProbeKind::Readiness,
];

impl ProbeKind {
    fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

pub fn probe_of(c: &Container, kind: ProbeKind) -> Option<&Probe> {
    match kind {
        ProbeKind::Startup => c.startup_probe.as_ref(),
        ProbeKind::Liveness => c.liveness_probe.as_ref(),
        ProbeKind::Readiness => c.readiness_probe.as_ref(),
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

impl PodState {
    pub fn new(pod: impl Into<std::sync::Arc<StaticPod>>, start_time: String) -> PodState {
        let pod = pod.into();
        let spec = &pod.pod.spec;
        let containers = spec
            .init_containers
            .iter()
            .map(|c| (c, true))
            .chain(spec.containers.iter().map(|c| (c, false)))
            .map(|(c, init)| ContainerState {
                name: c.name.clone(),
                init,
                ..Default::default()
            })
            .collect();
        PodState {
            pod,
            containers,
            sandbox: SandboxState::Missing,
            sandbox_backoff: Backoff::default(),
            terminating: false,
            start_time,
            ready_since: None,
        }
    }

    pub fn spec_of(&self, index: usize) -> &Container {
        self.pod.container(index)
    }

    pub fn uid(&self) -> &str {
        self.pod.uid()
    }

    /// Whether a container that ended with `exit_code` is started again under the pod's policy.
    fn restarts(&self, c: &ContainerState, exit_code: i32) -> bool {
        // An init container that succeeded is done whatever the policy.
        self.pod.pod.spec.restart_policy().restarts(exit_code) && !(c.init && exit_code == 0)
    }

    /// An init container that succeeded, or an app container that ended for good.
    pub fn finished(&self, c: &ContainerState) -> bool {
        c.running.is_none()
            && !c.starting
            && c.last.as_ref().is_some_and(|t| {
                if c.init {
                    t.exit_code == 0 || !self.restarts(c, t.exit_code)
                } else {
                    !self.restarts(c, t.exit_code)
                }
            })
    }

    fn busy(c: &ContainerState) -> bool {
        c.running.is_some() || c.starting || c.stopping
    }

    pub fn all_stopped(&self) -> bool {
        self.containers.iter().all(|c| !Self::busy(c))
    }

    /// True when an init container failed for good (restartPolicy Never).
    pub fn init_failed(&self) -> bool {
        self.containers.iter().any(|c| {
            c.init && self.finished(c) && c.last.as_ref().is_some_and(|t| t.exit_code != 0)
        })
    }
}

/// Decides what to do for one pod now.
pub fn plan(s: &PodState, now: Tick) -> Plan {
    let mut p = Plan::default();
    if s.terminating {
        for (i, c) in s.containers.iter().enumerate() {
            if c.running.is_some() && !c.stopping {
                p.actions.push(Action::Stop {
                    index: i,
                    grace: secs(s.pod.pod.spec.grace_period_seconds()),
                });
            }
        }
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
        SandboxState::Ready(_) => {}
        _ => return p,
    }
    // Init containers, strictly in order.
    for (i, c) in s.containers.iter().enumerate().filter(|(_, c)| c.init) {
        if s.finished(c) {
            if c.last.as_ref().is_some_and(|t| t.exit_code != 0) {
                return p; // failed for good: the pod is Failed, nothing more runs
            }
            continue;
        }
        if PodState::busy(c) {
            return p;
        }
        start_or_wait(&mut p, i, c, now);
        return p;
    }
    for (i, c) in s.containers.iter().enumerate().filter(|(_, c)| !c.init) {
        if c.running.is_some() && !c.stopping {
            if c.stop_reason.is_some() {
                p.actions.push(Action::Stop {
                    index: i,
                    grace: secs(s.pod.pod.spec.grace_period_seconds()),
                });
                continue;
            }
            plan_probes(&mut p, s, i, c, now);
            continue;
        }
        if PodState::busy(c) || s.finished(c) {
            continue;
        }
        start_or_wait(&mut p, i, c, now);
    }
    p
}

fn start_or_wait(p: &mut Plan, index: usize, c: &ContainerState, now: Tick) {
    match c.backoff.until {
        Some(until) if until > now => p.wake_at(until),
        _ => p.actions.push(Action::Start {
            index,
            attempt: if c.ever_started {
                c.restart_count + 1
            } else {
                0
            },
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

impl PodState {
    pub fn on_setup(&mut self, result: Result<Sandbox, String>, now: Tick) {
        match result {
            Ok(sb) => {
                self.sandbox = SandboxState::Ready(sb);
                self.sandbox_backoff = Backoff::default();
            }
            Err(message) => {
                let retry_at = self.sandbox_backoff.failed(now, now);
                self.sandbox = SandboxState::Failed { message, retry_at };
            }
        }
    }

    pub fn on_starting(&mut self, index: usize) {
        let c = &mut self.containers[index];
        c.starting = true;
    }

    pub fn on_started(&mut self, index: usize, mut running: Running, now: Tick) {
        running.since = now;
        let spec = self.spec_of(index).clone();
        let c = &mut self.containers[index];
        if c.ever_started {
            c.restart_count += 1;
        }
        c.ever_started = true;
        c.starting = false;
        c.waiting = None;
        c.stop_reason = None;
        c.running = Some(running);
        c.started = spec.startup_probe.is_none();
        c.ready = spec.readiness_probe.is_none() && c.started;
        for kind in ALL_PROBES {
            c.probes[kind.index()] = ProbeTrack {
                next: probe_of(&spec, kind).map(|pr| now + secs(pr.initial_delay())),
                ..Default::default()
            };
        }
    }

    /// A container found running when the agent started: probed again from now on (not
    /// before its initial delay), ready only once its probes say so, no restart counted.
    pub fn on_adopted(&mut self, index: usize, running: Running, now: Tick) {
        let spec = self.spec_of(index).clone();
        let c = &mut self.containers[index];
        let since = running.since;
        c.ever_started = true;
        c.running = Some(running);
        c.started = spec.startup_probe.is_none();
        c.ready = spec.readiness_probe.is_none() && c.started;
        for kind in ALL_PROBES {
            c.probes[kind.index()] = ProbeTrack {
                next: probe_of(&spec, kind).map(|pr| now.max(since + secs(pr.initial_delay()))),
                ..Default::default()
            };
        }
    }

    pub fn on_start_failed(&mut self, index: usize, failure: StartFailure, now: Tick, wall: &str) {
        let c = &mut self.containers[index];
        c.starting = false;
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

    /// A container instance ended. Stale records (an older attempt) are ignored.
    pub fn on_exit(&mut self, index: usize, rec: &ExitRecord, now: Tick) {
        let c = &mut self.containers[index];
        let Some(run) = c.running.as_ref().filter(|r| r.attempt == rec.attempt) else {
            return;
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
        c.running = None;
        c.stopping = false;
        c.started = false;
        c.ready = false;
        c.stop_reason = None;
        c.probes = Default::default();
        c.backoff.exited(now, ran_for);
    }

    pub fn on_stopped(&mut self, index: usize) {
        self.containers[index].stopping = false;
    }

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
        c.running.as_ref()?;
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

    pub fn on_probe_started(&mut self, index: usize, kind: ProbeKind) {
        self.containers[index].probes[kind.index()].in_flight = true;
    }
}

#[cfg(test)]
mod tests;
