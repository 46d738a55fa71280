//! The crun runtime: [`Runtime`] on the host, with crun as the OCI runtime and one monitor
//! process per container instance (see [`super::monitor`]).
//!
//! It owns everything of a pod on the host: the sandbox ([`super::podsetup`]), bundles
//! ([`super::bundle`]), instance rootfs ([`super::instance`]), monitors, cgroups, the
//! on-disk pod and container records, and the sweep after a crash. One file per operation:
//! [`create`] (image and bundle), [`launch`] (monitor, and abandoning a slow launch),
//! [`stop`], [`handler`] (probes and hooks), [`teardown`], [`inventory`] (what a restart
//! finds) and [`sweep`].

mod cli;
mod create;
mod exits;
mod handler;
mod image;
mod inventory;
mod launch;
mod sandbox;
mod stop;
mod sweep;
mod teardown;

pub use cli::{alive, ContainerState, Crun, CrunError};
pub use stop::KILL_WAIT;
pub use teardown::remove_cgroup;

use super::podsetup::Sandbox;
use super::records::{write_json, ContainerRecord, RecordError};
use super::{
    Created, ExitRecord, HandlerResult, HandlerSpec, InstanceSpec, Inventory, Layout, Running,
    Runtime, SandboxError, StartError, StopOutcome, StopSpec, SweepReport, SweepScope,
    TeardownError,
};
use crate::config::Config;
use crate::image::{ImageError, ImageStore};
use crate::manifest::StaticPod;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What every operation needs; shared read-only with the blocking jobs.
pub struct Context {
    pub config: Config,
    pub layout: Layout,
    pub crun: Crun,
    pub store: ImageStore,
    /// This binary, re-executed as the monitor.
    pub exe: PathBuf,
}

pub struct CrunRuntime {
    ctx: Arc<Context>,
    /// Launches in progress, by crun id: what abandoning one needs.
    launches: RefCell<HashMap<String, launch::Launch>>,
    /// What the inventory found to remove, for the sweep.
    leftovers: RefCell<inventory::Leftovers>,
    /// Finished instances being released, by crun id, and a signal when one is done: a
    /// pod's teardown waits for its own instead of deleting them a second time.
    releasing: RefCell<HashSet<String>>,
    released: event_listener::Event,
}

impl CrunRuntime {
    /// `runtime` is the crun binary (found on PATH), `exe` this binary (for the monitors).
    pub fn new(
        config: Config,
        layout: Layout,
        runtime: PathBuf,
        exe: PathBuf,
    ) -> Result<CrunRuntime, ImageError> {
        let store = ImageStore::open(&config.root_dir)?;
        Ok(CrunRuntime {
            ctx: Arc::new(Context {
                crun: Crun {
                    binary: runtime,
                    root: layout.crun_root(),
                    timeout: config.runtime_request_timeout,
                },
                config,
                layout,
                store,
                exe,
            }),
            launches: RefCell::default(),
            leftovers: RefCell::default(),
            releasing: RefCell::default(),
            released: event_listener::Event::new(),
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }
}

/// Ends a release (also one whose task is dropped): the id leaves the set, teardowns look
/// again.
struct Released<'a>(&'a CrunRuntime, &'a str);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.releasing.borrow_mut().remove(self.1);
        self.0.released.notify(usize::MAX);
    }
}

impl Runtime for CrunRuntime {
    async fn setup_sandbox(&self, pod: &Arc<StaticPod>) -> Result<Sandbox, SandboxError> {
        sandbox::setup(&self.ctx, pod).await
    }

    async fn create(&self, spec: &InstanceSpec) -> Result<Created, StartError> {
        create::create(&self.ctx, spec).await
    }

    async fn launch(&self, spec: &InstanceSpec) -> Result<Running, StartError> {
        launch::launch(&self.ctx, &self.launches, spec).await
    }

    async fn abandon(&self, spec: &InstanceSpec) -> Result<(), StartError> {
        launch::abandon(&self.ctx, &self.launches, spec).await
    }

    async fn stop(&self, spec: &StopSpec) -> StopOutcome {
        stop::stop(&self.ctx, spec).await
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), CrunError> {
        self.ctx.crun.exec(id, cmd, timeout).await
    }

    async fn run_handler(&self, spec: &HandlerSpec) -> HandlerResult {
        handler::run_handler(&self.ctx, spec).await
    }

    async fn release(&self, exit: &ExitRecord) {
        if !self.releasing.borrow_mut().insert(exit.id.clone()) {
            return; // the same record twice: already being released
        }
        let _done = Released(self, &exit.id);
        let ctx = &self.ctx;
        let _ = ctx.crun.delete(&exit.id).await;
        let instance = ctx
            .layout
            .instance(&exit.pod_uid, &exit.container, exit.attempt);
        let exit_file = ctx.layout.exit_file(&exit.id);
        // The record goes last, so that a crash in between redoes the cleanup.
        crate::sys::blocking::run_logged("releasing a finished container", move || {
            super::instance::release_instance(&instance);
            let _ = std::fs::remove_file(exit_file);
        })
        .await;
    }

    async fn teardown(&self, pod: &Arc<StaticPod>, keep_logs: bool) -> Result<(), TeardownError> {
        // A pod's last exits and its teardown come together: its instances still being
        // released are left to that (a crun delete each), then the rest is removed.
        let prefix = crate::runtime::layout::Layout::pod_id_prefix(pod.uid());
        loop {
            let listener = self.released.listen();
            if !self
                .releasing
                .borrow()
                .iter()
                .any(|id| id.starts_with(&prefix))
            {
                break;
            }
            listener.await;
        }
        teardown::teardown(&self.ctx, pod, keep_logs).await
    }

    fn save_container(
        &self,
        uid: &str,
        container: &str,
        record: &ContainerRecord,
    ) -> Result<(), RecordError> {
        let dir = self.ctx.layout.container(uid, container);
        std::fs::create_dir_all(&dir).map_err(|source| RecordError::Write {
            path: dir.clone(),
            source,
        })?;
        write_json(&dir.join("status.json"), record, false)
    }

    fn save_rollouts(&self, rollouts: &[crate::desired::Rollout]) -> Result<(), RecordError> {
        crate::runtime::records::save_rollouts(
            &self.ctx.layout.root.join("rollouts.json"),
            rollouts,
        )
    }

    async fn inventory(&self) -> Inventory {
        let (mut inventory, leftovers) = inventory::inventory(&self.ctx).await;
        inventory.rollouts =
            crate::runtime::records::load_rollouts(&self.ctx.layout.root.join("rollouts.json"));
        *self.leftovers.borrow_mut() = leftovers;
        inventory
    }

    async fn sweep(&self, scope: &SweepScope) -> SweepReport {
        let leftovers = std::mem::take(&mut *self.leftovers.borrow_mut());
        sweep::sweep(&self.ctx, scope, leftovers).await
    }

    async fn watch_exits(&self, tx: smol::channel::Sender<ExitRecord>) {
        exits::watch_exits(&self.ctx.layout.exits(), tx).await
    }

    fn log_file(&self, pod: &StaticPod, container: &str, attempt: u32) -> PathBuf {
        self.ctx
            .layout
            .log_file(pod.namespace(), pod.name(), pod.uid(), container, attempt)
    }
}
