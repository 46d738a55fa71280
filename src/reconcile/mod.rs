//! The reconciler: one pod's state, and the pure step that decides what to do next.
//!
//! [`plan`] is a function of (state, now) that returns actions and when to look again, in
//! the manner of kube-rs' `Action::requeue`. What happened (a container created, started,
//! ended, a probe answered) is applied with the `on_*` methods of [`PodState`], also pure.
//! The agent's core runs this for every pod and turns the actions
//! into runtime commands; [`status`] turns the state into what the kubelet would report.

mod apply;
pub mod backoff;
mod container;
mod plan;
mod pod;
pub mod status;

pub use container::{
    probe_of, ContainerState, Phase, ProbeKind, ProbeTrack, StartFailure, ALL_PROBES,
};
pub use plan::{plan, Action, Plan};
pub use pod::{PodState, SandboxState};
// The runtime reports these; the state holds them.
pub use crate::runtime::{Running, Terminated};

use std::time::Duration;

/// Monotonic time since the agent started; the clock is passed in, never read here.
pub type Tick = Duration;

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(0) as u64)
}

#[cfg(test)]
mod tests;
