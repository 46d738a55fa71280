//! The agent's pure core: `handle(state, input, now) -> commands`.
//!
//! Everything the agent decides is here, as values in and values out: a source update, a
//! runtime result (sandbox set up, container created, launched, abandoned, stopped, torn
//! down), a container exit, a probe answer, a timer or a signal goes in ([`Input`]); what to
//! do comes out ([`Command`]: runtime operations, records to save, Events), with when to
//! look again. The clock enters only as [`Now`]; nothing here does I/O. The shell
//! ([`super::shell`]) runs the commands against a [`crate::runtime::Runtime`] and feeds
//! the results back, and the unit tests do the same with the fake runtime, in milliseconds.
//!
//! Rules that span pods live here too: an edited pod's successor sets up its sandbox at once
//! but starts no container until the old version's containers have stopped.

mod adopt;
pub(crate) mod inputs;
mod publish;
mod rollout;
mod start;
mod step;
mod sync;

pub use adopt::Adoption;

use super::event::{Event, EventKind, PodRef};
use crate::config::Config;
use crate::desired::{DesiredSet, Problem};
use crate::manifest::StaticPod;
use crate::reconcile::{PodState, ProbeKind, Running, Tick};
use crate::runtime::podsetup::Sandbox;
use crate::runtime::{
    ContainerRecord, Created, ExitRecord, HandlerResult, HandlerSpec, InstanceSpec, SandboxError,
    StartError, StopOutcome, StopSpec, TeardownError,
};
use crate::source::{Snapshot, SourceKey};
use crate::status::Histogram;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The clock, as the shell reads it once per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since the agent started: every deadline is on this clock.
    pub tick: Tick,
    /// Wall-clock time, for timestamps users see.
    pub wall: SystemTime,
}

impl Now {
    pub fn wall_text(&self) -> String {
        crate::sys::timefmt::rfc3339(self.wall)
    }
}

/// What the core needs to know of the configuration.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    pub node_name: String,
    pub static_pod_path: Option<PathBuf>,
    pub static_pod_url: Option<String>,
    /// How long a launch may take before it is abandoned.
    pub runtime_request_timeout: Duration,
    /// The health-gated rollback's default trial (`rollbackAfter`).
    pub rollback_after: Option<Duration>,
}

impl CoreConfig {
    pub fn from_config(c: &Config) -> CoreConfig {
        CoreConfig {
            node_name: c.node_name.clone(),
            static_pod_path: c.static_pod_path.clone(),
            static_pod_url: c.static_pod_url.clone(),
            runtime_request_timeout: c.runtime_request_timeout,
            rollback_after: c.rollback_after,
        }
    }

    /// The sources whose first reading completes the desired set.
    fn sources(&self) -> Vec<SourceKey> {
        let mut keys = Vec::new();
        if let Some(p) = &self.static_pod_path {
            keys.push(SourceKey::Dir(p.clone()));
        }
        if let Some(u) = &self.static_pod_url {
            keys.push(SourceKey::Url(u.clone()));
        }
        keys
    }
}

/// Something that happened.
#[derive(Debug)]
pub enum Input {
    /// A source's whole current reading.
    Sources(Snapshot),
    SandboxReady {
        uid: String,
        result: Result<Sandbox, SandboxError>,
    },
    Created {
        uid: String,
        index: usize,
        attempt: u32,
        result: Result<Created, StartError>,
    },
    Launched {
        uid: String,
        index: usize,
        attempt: u32,
        result: Result<Running, StartError>,
    },
    Abandoned {
        uid: String,
        index: usize,
        attempt: u32,
        result: Result<(), StartError>,
    },
    /// A container instance ended (its monitor's exit record).
    Exited(ExitRecord),
    Stopped {
        uid: String,
        index: usize,
        outcome: StopOutcome,
    },
    Probed {
        uid: String,
        index: usize,
        kind: ProbeKind,
        result: HandlerResult,
    },
    /// A container's `postStart` hook ended.
    PostStarted {
        uid: String,
        index: usize,
        attempt: u32,
        result: HandlerResult,
    },
    TornDown {
        uid: String,
        result: Result<(), TeardownError>,
    },
    /// A deadline the core asked for has come.
    Timer,
    /// SIGTERM or SIGINT: the agent ends, its containers keep running.
    Shutdown,
}

/// Something to do.
#[derive(Debug, Clone)]
pub enum Command {
    SetupSandbox(Arc<StaticPod>),
    Create(InstanceSpec),
    Launch(InstanceSpec),
    Abandon(InstanceSpec),
    Stop {
        uid: String,
        index: usize,
        spec: StopSpec,
    },
    Probe {
        uid: String,
        index: usize,
        kind: ProbeKind,
        spec: HandlerSpec,
    },
    PostStart {
        uid: String,
        index: usize,
        attempt: u32,
        spec: HandlerSpec,
    },
    /// Free what an ended instance used.
    Release(ExitRecord),
    /// Keep the rollouts (trials, versions rolled back) for the next agent.
    SaveRollouts(Vec<crate::desired::Rollout>),
    Teardown(Arc<StaticPod>),
    SaveContainer {
        uid: String,
        /// `namespace/name/container`, for the log line if it cannot be saved.
        name: String,
        container: String,
        record: ContainerRecord,
    },
    Event(Event),
    /// End the agent (its containers keep running, to be adopted at the next start).
    Shutdown,
}

/// What one input led to.
#[derive(Debug, Default)]
pub struct Output {
    pub commands: Vec<Command>,
    /// The earliest deadline any pod asked for (backoff, probe, launch timeout).
    pub wake: Option<Tick>,
    /// Pods removed (by UID): what is kept about them can go, and memory may be given back
    /// once the agent is quiet.
    pub removed: Vec<String>,
}

impl Output {
    fn wake_at(&mut self, t: Tick) {
        self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
    }
}

pub struct Core {
    config: CoreConfig,
    pods: BTreeMap<String, PodState>,
    desired: DesiredSet,
    problems: Vec<Problem>,
    start_latency: Histogram,
    /// Something the status shows may have changed since the board was last built.
    visible: bool,
    /// Candidates rolled back since the agent started.
    rollbacks: u64,
    /// The rollouts as last saved.
    saved_rollouts: Vec<crate::desired::Rollout>,
    /// The desired set's generation when the rollouts were last compared with those saved.
    rollouts_seen: Option<u64>,
}

impl Core {
    pub fn new(config: CoreConfig) -> Core {
        Core {
            desired: DesiredSet::new(config.sources()).with_rollback(config.rollback_after),
            config,
            pods: BTreeMap::new(),
            problems: Vec::new(),
            start_latency: Histogram::default(),
            visible: true,
            rollbacks: 0,
            saved_rollouts: Vec::new(),
            rollouts_seen: None,
        }
    }

    /// Applies `input`, then plans every pod: the commands to run and when to look again.
    pub fn handle(&mut self, input: Input, now: Now) -> Output {
        let mut out = Output::default();
        self.apply(input, now, &mut out);
        self.plan(now, &mut out);
        out
    }

    /// Applies `input` without planning (the shell applies a batch, then plans once).
    pub fn apply(&mut self, input: Input, now: Now, out: &mut Output) {
        // A probe answer that changes nothing and a timer are the idle agent's only inputs
        // (20 probes every 10 s): they need no new board unless the status changed.
        let quiet = matches!(input, Input::Probed { .. } | Input::Timer);
        let before = quiet.then(|| self.fingerprint());
        inputs::apply(self, input, now, out);
        self.visible |= before.is_none_or(|b| b != self.fingerprint());
    }

    /// Plans every pod and turns the actions into commands.
    pub fn plan(&mut self, now: Now, out: &mut Output) {
        let before = self.fingerprint();
        self.judge_trials(now, out);
        step::step(self, now, out);
        self.visible |= before != self.fingerprint();
    }

    /// Whether the board needs building again (something visible may have changed since the
    /// last call).
    pub fn take_visible(&mut self) -> bool {
        std::mem::take(&mut self.visible)
    }

    /// What of every container the status shows, in brief: a change here is a new board.
    fn fingerprint(&self) -> Vec<(bool, bool, bool, u32, u8, bool)> {
        self.pods
            .values()
            .flat_map(|p| {
                p.containers.iter().map(move |c| {
                    let phase = match c.phase {
                        crate::reconcile::Phase::Idle => 0,
                        crate::reconcile::Phase::Creating { .. } => 1,
                        crate::reconcile::Phase::Launching { .. } => 2,
                        crate::reconcile::Phase::Abandoning { .. } => 3,
                        crate::reconcile::Phase::Running(_) => 4,
                        crate::reconcile::Phase::Stopping(_) => 5,
                        crate::reconcile::Phase::Ended { .. } => 6,
                    };
                    (
                        c.ready,
                        c.started,
                        c.stop_reason.is_some(),
                        c.restart_count,
                        phase,
                        p.terminating || p.deadline_exceeded,
                    )
                })
            })
            .collect()
    }

    pub fn node_name(&self) -> &str {
        &self.config.node_name
    }

    pub fn pods(&self) -> &BTreeMap<String, PodState> {
        &self.pods
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

/// An event about pod `p` (and its container `index`, if any), stamped `now`.
fn event(
    p: &PodState,
    index: Option<usize>,
    kind: EventKind,
    reason: &'static str,
    message: String,
    now: Now,
) -> Command {
    Command::Event(Event {
        pod: PodRef {
            namespace: p.pod.namespace().to_string(),
            name: p.pod.name().to_string(),
            uid: p.uid().to_string(),
        },
        container: index
            .and_then(|i| p.containers.get(i))
            .map(|c| c.name.clone()),
        init_container: index
            .and_then(|i| p.containers.get(i))
            .is_some_and(|c| c.init),
        kind,
        reason,
        message,
        time: now.wall,
    })
}

/// The record of container `index` that survives an agent restart.
fn save(p: &PodState, index: usize) -> Option<Command> {
    let c = p.containers.get(index)?;
    Some(Command::SaveContainer {
        uid: p.uid().to_string(),
        name: p.container_name(index),
        container: c.name.clone(),
        record: ContainerRecord {
            restart_count: c.restart_count,
            ever_started: c.ever_started,
            last: c.last.clone(),
            backoff_delay_secs: c.backoff.delay.map(|d| d.as_secs()),
        },
    })
}

#[cfg(test)]
mod tests;
