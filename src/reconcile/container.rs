//! One container's state: its phase (what runs or is in flight, with the guards that say
//! what may happen next, as youki's `ContainerStatus::can_start()`), restart count, last
//! termination, backoff and probes.

use super::backoff::Backoff;
use super::Tick;
use crate::manifest::pod::{Container, Probe};
use crate::runtime::{ExitRecord, Running, StartError, Terminated};

/// What a container is doing right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Phase {
    /// Nothing runs and nothing is in flight: never started, ended, or held by backoff.
    #[default]
    Idle,
    /// Image, rootfs and bundle are being made for `attempt`; `since` is the start decision.
    Creating {
        attempt: u32,
        since: Tick,
    },
    /// The runtime is starting `attempt`; it is abandoned at `deadline`
    /// (`runtimeRequestTimeout`).
    Launching {
        attempt: u32,
        since: Tick,
        deadline: Tick,
    },
    /// `attempt` took too long to start; what it left is being removed.
    Abandoning {
        attempt: u32,
    },
    Running(Running),
    /// A stop of this instance is in flight.
    Stopping(Running),
    /// Stopped and gone, but its exit record has not come yet (it is on its way); taken
    /// as lost at `deadline`, so that a missing record never holds the pod up.
    Ended {
        running: Running,
        deadline: Tick,
    },
}

impl Phase {
    /// Nothing runs and nothing is in flight: a start may be planned.
    pub fn can_start(&self) -> bool {
        matches!(self, Phase::Idle)
    }

    /// It runs and no stop is in flight: a stop, or a probe, may be planned.
    pub fn can_stop(&self) -> bool {
        matches!(self, Phase::Running(_))
    }

    /// The instance that runs (also while it is being stopped).
    pub fn running(&self) -> Option<&Running> {
        match self {
            Phase::Running(r) | Phase::Stopping(r) | Phase::Ended { running: r, .. } => Some(r),
            _ => None,
        }
    }

    /// A start is in flight (create, launch, or the abandoning of a launch).
    pub fn is_starting(&self) -> bool {
        matches!(
            self,
            Phase::Creating { .. } | Phase::Launching { .. } | Phase::Abandoning { .. }
        )
    }

    /// Anything runs or is in flight.
    pub fn is_busy(&self) -> bool {
        !self.can_start()
    }
}

/// A start that did not produce a running container, as the status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
    /// The container was created and failed (counts as a run, restartCount goes up), as
    /// opposed to never created (image missing): the kubelet's StartError vs ErrImage*.
    pub ran: bool,
}

impl From<&StartError> for StartFailure {
    fn from(e: &StartError) -> Self {
        StartFailure {
            reason: e.reason().into(),
            message: e.to_string(),
            ran: e.ran(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

pub const ALL_PROBES: [ProbeKind; 3] = [
    ProbeKind::Startup,
    ProbeKind::Liveness,
    ProbeKind::Readiness,
];

impl ProbeKind {
    pub fn index(self) -> usize {
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
    /// A native sidecar (an init container with `restartPolicy: Always`): it runs beside the
    /// app containers, restarted whatever the pod's policy, until they are done.
    pub sidecar: bool,
    pub restart_count: u32,
    /// Whether any instance was ever started (the next one is then a restart).
    pub ever_started: bool,
    pub phase: Phase,
    /// Why a running container is being stopped (liveness failure, a lost sandbox).
    pub stop_reason: Option<String>,
    pub last: Option<Terminated>,
    /// Why the last start failed: reason and message.
    pub waiting: Option<(String, String)>,
    pub backoff: Backoff,
    pub started: bool,
    pub ready: bool,
    pub probes: [ProbeTrack; 3],
    /// The running instance's `postStart` hook has not succeeded yet: until it has, the
    /// container is not ready, is not probed, and the containers after it do not start (the
    /// kubelet starts them in order, each after its predecessor's hook).
    pub post_start_pending: bool,
    /// That hook runs now.
    pub post_start_in_flight: bool,
    /// The exit record of the instance being launched, come before the launch's own report
    /// (a container that ends at once): applied when the launch is, never dropped.
    pub early_exit: Option<ExitRecord>,
}

impl ContainerState {
    /// The instance that runs, if any.
    pub fn running(&self) -> Option<&Running> {
        self.phase.running()
    }

    /// The attempt number the next start uses.
    pub fn next_attempt(&self) -> u32 {
        if self.ever_started {
            self.restart_count + 1
        } else {
            0
        }
    }
}
