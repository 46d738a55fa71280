//! The runtime stage: a pod's sandbox and containers on the host, behind one small trait.
//!
//! [`Runtime`] is the seam between the pure agent core (which decides) and the host (which
//! does): set up a pod's sandbox, create and launch a container instance, stop it, run a
//! probe or hook in it, release what an ended instance used, tear a pod down, and tell what
//! exists on the host after a restart (the inventory) and remove what nobody wants (the
//! sweep). [`crun::CrunRuntime`] is the real one; `fake::FakeRuntime` records calls for the
//! core's unit tests. `staticlet drain` uses the same trait.
//!
//! The crun runtime's layout under the root dir (every name in it was validated: UIDs are
//! hex hashes, container names DNS labels):
//! - `lock`: flocked by the one agent (or `drain`) that owns the root dir, see [`rootlock`];
//! - `crun/`: crun's state root, ours alone, so `crun list` shows exactly our containers;
//! - `exits/<id>.json`: exit records written by monitors, watched by the agent;
//! - `pods/<uid>/pod.json`: the manifest a pod was started from (its last good version);
//! - `pods/<uid>/{etc,shm,ns,volumes}`: what the pod's containers share;
//! - `pods/<uid>/containers/<name>/status.json`: restart count and last termination;
//! - `pods/<uid>/containers/<name>/<attempt>/`: one instance: bundle, monitor files;
//! - `network/<uid>.json`: the pod's network attachment (see [`crate::network`]).
//!
//! Pod cgroups live under the agent's own cgroup parent (`cgroupRoot`), never shared with
//! another agent, so the start-up sweep may remove whatever it does not know there.

pub mod bundle;
pub mod crun;
mod error;
#[cfg(test)]
pub mod fake;
pub mod instance;
mod layout;
pub mod logwriter;
pub mod monitor;
pub mod pidns;
pub mod podsetup;
pub mod probe;
pub mod records;
pub mod rootlock;
pub mod security;
pub mod subpath;

pub use error::{SandboxError, StartError, TeardownError};
pub use layout::Layout;
pub use records::{ContainerRecord, ExitRecord, MonitorSpec, StartedRecord, Terminated};

use crate::manifest::pod::Handler;
use crate::manifest::StaticPod;
use podsetup::Sandbox;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A container instance that runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub attempt: u32,
    /// The runtime's id of the instance.
    pub id: String,
    pub pid: i32,
    /// The process whose end means the instance ended (the monitor).
    pub monitor_pid: i32,
    pub started_at: String,
    /// When the core saw it start (monotonic); set by the core, zero from the runtime.
    pub since: Duration,
}

/// One instance of one container of a pod: what create, launch and abandon work on.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub pod: Arc<StaticPod>,
    pub sandbox: Sandbox,
    /// Init containers first, then app containers, as [`StaticPod::container`] counts.
    pub index: usize,
    pub attempt: u32,
}

impl InstanceSpec {
    pub fn container_name(&self) -> &str {
        &self.pod.container(self.index).name
    }
}

/// What `create` made ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The image reference, as the container names it.
    pub image: String,
    /// Whether it was fetched from its registry for this start (a `Pulled` event says so).
    pub pulled: bool,
}

/// A probe or lifecycle hook to run against a running instance.
#[derive(Debug, Clone)]
pub struct HandlerSpec {
    pub pod: Arc<StaticPod>,
    pub sandbox: Sandbox,
    pub index: usize,
    pub running: Running,
    pub handler: Handler,
    pub timeout: Duration,
}

/// How a probe or hook went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerResult {
    pub success: bool,
    pub message: String,
}

/// Stopping one instance: the hook first (preStop), then the signal, then SIGKILL once
/// `grace` is over.
#[derive(Debug, Clone)]
pub struct StopSpec {
    pub id: String,
    /// The process to wait for: the monitor, or the container itself when it has none.
    pub wait_pid: i32,
    pub signal: String,
    pub grace: Duration,
    pub pre_stop: Option<HandlerSpec>,
}

/// How a stop went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopOutcome {
    /// The preStop hook failed: its message.
    pub pre_stop_failed: Option<String>,
    /// The grace period ran out and SIGKILL was sent.
    pub killed: bool,
    /// The instance is confirmed gone (false: still there 10 s after SIGKILL).
    pub gone: bool,
}

/// What the runtime found on the host for one container of a recorded pod.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundContainer {
    pub name: String,
    pub record: Option<ContainerRecord>,
    /// Its latest instance, if one was ever made.
    pub latest: Option<FoundInstance>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FoundInstance {
    /// Its monitor still runs: adopt it.
    Running(Running),
    /// It ended while the agent was down; the exit record tells how.
    Exited(Running, ExitRecord),
    /// It was started, but its monitor is gone without a record (a reboot, a killed
    /// monitor): the exit status is lost.
    Lost { attempt: u32, started_at: String },
}

/// A pod whose record the runtime found.
#[derive(Debug, Clone)]
pub struct FoundPod {
    pub pod: StaticPod,
    pub containers: Vec<FoundContainer>,
}

/// A container the runtime runs that belongs to no recorded instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    pub id: String,
    pub pid: i32,
    pub status: String,
}

/// What exists on the host, read at start-up (and by `drain`).
#[derive(Debug)]
pub struct Inventory {
    pub pods: Vec<FoundPod>,
    /// Containers without a record, or why the runtime could not list them.
    pub strays: Result<Vec<Stray>, StrayListError>,
    /// Rollouts the last agent kept (trials going on, versions rolled back).
    pub rollouts: Vec<crate::desired::Rollout>,
}

/// The runtime's own list of containers could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StrayListError(pub String);

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            pods: Vec::new(),
            strays: Ok(Vec::new()),
            rollouts: Vec::new(),
        }
    }
}

/// What a sweep keeps.
#[derive(Debug, Clone)]
pub enum SweepScope {
    /// At start-up: the pods and running instances the agent adopted.
    Keep {
        pods: HashSet<String>,
        running: HashSet<String>,
    },
    /// `drain`: nothing, down to the agent's cgroup parent.
    Everything,
}

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub containers: usize,
    pub pod_dirs: usize,
    pub cgroups: usize,
}

/// The runtime stage. Methods are called from the agent's one event-loop thread; slow work
/// inside them goes to [`crate::sys::blocking`], never blocking that thread.
#[allow(async_fn_in_trait)] // single-threaded executor: no Send bound is wanted
pub trait Runtime {
    /// Sets up (or adopts, after a restart) what the pod's containers share; idempotent.
    async fn setup_sandbox(&self, pod: &Arc<StaticPod>) -> Result<Sandbox, SandboxError>;
    /// Makes an instance ready to launch: checks the sandbox is intact, finds (or pulls) the
    /// image, prepares rootfs and bundle.
    async fn create(&self, spec: &InstanceSpec) -> Result<Created, StartError>;
    /// Launches a created instance and waits for the runtime's report, however long it
    /// takes; the core abandons it when it takes too long.
    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, StartError>;
    /// Ends a launch that took too long and confirms the instance gone, so that no second
    /// instance ever runs beside it.
    async fn abandon(&self, spec: &InstanceSpec) -> Result<(), StartError>;
    async fn stop(&self, spec: &StopSpec) -> StopOutcome;
    /// Runs `cmd` in a running instance: exit code and output.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), crun::CrunError>;
    /// Runs a probe or hook (exec, httpGet, tcpSocket) against a running instance.
    async fn run_handler(&self, spec: &HandlerSpec) -> HandlerResult;
    /// Frees what an ended instance used (runtime state, rootfs, bundle, its exit record).
    async fn release(&self, exit: &ExitRecord);
    /// Removes everything of a pod but, with `keep_logs`, its logs.
    async fn teardown(&self, pod: &Arc<StaticPod>, keep_logs: bool) -> Result<(), TeardownError>;
    /// Records a container's restart count and last state, for the next agent.
    fn save_container(
        &self,
        uid: &str,
        container: &str,
        record: &ContainerRecord,
    ) -> Result<(), records::RecordError>;
    /// Keeps the rollouts (trials, versions rolled back) for the next agent, atomically.
    fn save_rollouts(
        &self,
        rollouts: &[crate::desired::Rollout],
    ) -> Result<(), records::RecordError>;
    /// What exists: recorded pods and their latest instances, and containers nobody owns.
    async fn inventory(&self) -> Inventory;
    /// Removes what the scope does not keep; run before any pod is started.
    async fn sweep(&self, scope: &SweepScope) -> SweepReport;
    /// Sends every exit record (an instance ended) from now on.
    async fn watch_exits(&self, tx: smol::channel::Sender<ExitRecord>);
    /// Where an instance's log is (for `staticlet logs` and the log endpoint).
    fn log_file(&self, pod: &StaticPod, container: &str, attempt: u32) -> PathBuf;
}
