//! The agent (`staticlet run`): wires the pipeline together and runs the event loop.
//!
//! One thread owns all pod state. It wakes on an event (a source snapshot, a container that
//! started or exited, a probe answer, a signal) or on the earliest deadline any pod asked for
//! (backoff, probe); it never polls. Everything slow (starting a container, stopping one
//! within its grace period, probes) runs as a task that reports back with an event, so one
//! pod never waits for another, and nothing on that path touches the network.

pub mod actions;
pub(crate) mod blocking;
mod events;
mod publish;
pub mod recover;
mod sandbox;
mod signals;
mod step;

pub use signals::block_termination_signals;
use signals::watch_signals;

use crate::cli::{run_config, Failure, RunCmd};
use crate::config::Config;
use crate::desired::{DesiredSet, Problem};
use crate::image::ImageStore;
use crate::reconcile::{PodState, ProbeKind, Running, StartFailure, Tick};
use crate::runtime::crun::Crun;
use crate::runtime::podsetup::Sandbox;
use crate::runtime::rootlock::{LockError, RootLock};
use crate::runtime::{ExitRecord, Layout};
use crate::source::{self, Snapshot, SourceKey};
use crate::status::StatusBoard;
use smol::channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub enum Event {
    Snapshot(Snapshot),
    SetupDone {
        uid: String,
        result: Result<Sandbox, String>,
    },
    Started {
        uid: String,
        index: usize,
        result: Result<Running, StartFailure>,
        latency: Duration,
    },
    Exit(ExitRecord),
    Stopped {
        uid: String,
        index: usize,
    },
    Probe {
        uid: String,
        index: usize,
        kind: ProbeKind,
        success: bool,
        message: String,
    },
    TornDown {
        uid: String,
    },
    Shutdown,
}

/// Everything the action tasks need, shared read-only.
pub struct Context {
    pub config: Config,
    pub layout: Layout,
    pub crun: Crun,
    pub store: ImageStore,
    pub exe: PathBuf,
    pub events: Sender<Event>,
    pub board: Arc<StatusBoard>,
    /// Where the pod's lifecycle events go (shown by `describe`, posted to the API server).
    pub recorder: Arc<crate::events::Recorder>,
}

pub fn main(cmd: &RunCmd) -> Result<(), Failure> {
    let config = run_config(cmd)?;
    block_termination_signals();
    // glibc gives every thread that allocates an arena of its own; the agent's few threads
    // (probes, unpacking, the endpoint) need no such concurrency, and RSS is the budget.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    crate::logging::init(cmd.verbose);
    for f in &config.ignored_fields {
        log::info!("KubeletConfiguration field {f} is not used by staticlet; ignoring it");
    }
    // Before anything touches the root dir: a second agent there would adopt this one's
    // containers and stop them after the next edit. Held until the process ends.
    let layout = Layout::new(
        &config.root_dir,
        &config.pod_logs_dir,
        &config.cgroup_root(),
    );
    std::fs::create_dir_all(&layout.root)
        .map_err(|e| Failure::Failed(format!("{}: {e}", layout.root.display())))?;
    let _lock =
        RootLock::acquire(&layout.root, &layout.lock_file(), "run").map_err(|e| match e {
            LockError::Held { .. } => {
                Failure::Usage(format!("{e}; stop it first or give another --root-dir"))
            }
            LockError::Io { .. } => Failure::Failed(e.to_string()),
        })?;
    let runtime = crate::host::which(&config.runtime_path).ok_or_else(|| {
        Failure::Usage(format!(
            "runtime {} not found on PATH; install crun or set --runtime",
            config.runtime_path.display()
        ))
    })?;
    for d in [
        layout.crun_root(),
        layout.exits(),
        layout.pods(),
        layout.logs.clone(),
    ] {
        std::fs::create_dir_all(&d)
            .map_err(|e| Failure::Failed(format!("{}: {e}", d.display())))?;
    }
    crate::fsutil::remove_stale_temps(&layout.exits());
    let store = ImageStore::open(&config.root_dir).map_err(|e| Failure::Failed(e.to_string()))?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Failed(format!("cannot find my own executable: {e}")))?;
    let (tx, rx) = smol::channel::unbounded();
    let board = Arc::new(StatusBoard::default());
    crate::config::set_node_ip(config.node_ip);
    let recorder = Arc::new(crate::events::Recorder::open(
        &config.root_dir,
        &config.node_name,
        config.event_limits,
        config.kubeconfig.is_some(),
    ));
    crate::events::EventSink::record(
        &*recorder,
        crate::events::kubelet::starting(&config.node_name),
    );
    if let Some(addr) = config.status_address {
        crate::status::server::start(addr, board.clone(), recorder.clone())
            .map_err(|e| Failure::Failed(format!("status endpoint {addr}: {e}")))?;
    }
    if config.kubeconfig.is_some() {
        // A bad kubeconfig is a usage error; an unreachable API server is not an error.
        crate::mirror::start(&config, board.clone(), recorder.clone()).map_err(|e| match e {
            crate::mirror::MirrorError::Thread(_) => Failure::Failed(e.to_string()),
            _ => Failure::Usage(e.to_string()),
        })?;
    }
    let url_source = match &config.static_pod_url {
        Some(url) => Some(
            source::url::UrlSource::new(
                url,
                config.static_pod_url_header.clone(),
                config.manifest_url_ca_file.as_deref(),
                &config.root_dir,
                &config.node_name,
            )
            .map_err(Failure::Usage)?,
        ),
        None => None,
    };
    let ctx = Arc::new(Context {
        crun: Crun {
            binary: runtime,
            root: layout.crun_root(),
        },
        config,
        layout,
        store,
        exe,
        events: tx,
        board,
        recorder,
    });
    let ex = Rc::new(smol::LocalExecutor::new());
    smol::block_on(ex.run(Agent::new(ctx, ex.clone()).run(rx, url_source)));
    Ok(())
}

pub struct Agent {
    ctx: Arc<Context>,
    ex: Rc<smol::LocalExecutor<'static>>,
    pods: BTreeMap<String, PodState>,
    desired: DesiredSet,
    problems: Vec<Problem>,
    epoch: Instant,
    start_latency: crate::status::Histogram,
    /// When to give freed memory back to the system: once the agent has been quiet for a
    /// moment after a pod went (the cleanups that follow a removal free more).
    trim_at: Option<Tick>,
}

/// How long the agent waits, quiet, after a removal before trimming the heap.
const TRIM_AFTER: Duration = Duration::from_secs(2);

impl Agent {
    fn new(ctx: Arc<Context>, ex: Rc<smol::LocalExecutor<'static>>) -> Agent {
        let mut keys = Vec::new();
        if let Some(p) = &ctx.config.static_pod_path {
            keys.push(SourceKey::Dir(p.clone()));
        }
        if let Some(u) = &ctx.config.static_pod_url {
            keys.push(SourceKey::Url(u.clone()));
        }
        Agent {
            ctx,
            ex,
            pods: BTreeMap::new(),
            desired: DesiredSet::new(keys),
            problems: Vec::new(),
            epoch: Instant::now(),
            start_latency: Default::default(),
            trim_at: None,
        }
    }

    fn now(&self) -> Tick {
        self.epoch.elapsed()
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        self.ex.spawn(fut).detach();
    }

    async fn run(mut self, rx: Receiver<Event>, url_source: Option<source::url::UrlSource>) {
        let now = self.now();
        let recovered = recover::recover(&self.ctx, &mut self.pods, &mut self.desired, now);
        log::info!(
            "staticlet {} on node {}: {} pod(s) adopted; sources: {}; pod cgroups under {}",
            env!("CARGO_PKG_VERSION"),
            self.ctx.config.node_name,
            self.pods.len(),
            self.sources_text(),
            self.ctx.layout.cgroup_root
        );
        // The adopted pods are shown before the sweep, however much it has to remove; the
        // sweep still ends before any source is read, so it never meets a pod being started.
        self.publish();
        recover::sweep(&self.ctx, &self.pods, recovered.leftovers).await;
        if let Some(path) = self.ctx.config.static_pod_path.clone() {
            let src = source::dir::DirSource::new(path, self.ctx.config.node_name.clone());
            self.spawn(source::run_dir(
                src,
                self.ctx.config.file_check_frequency,
                self.ctx.events.clone(),
                Event::Snapshot,
            ));
        }
        if let Some(src) = url_source {
            let tx = self.ctx.events.clone();
            let every = self.ctx.config.http_check_frequency;
            let spawned = std::thread::Builder::new()
                .name("manifest-url".into())
                .spawn(move || {
                    source::url::run(src, every, |snap| {
                        tx.send_blocking(Event::Snapshot(snap)).is_ok()
                    })
                });
            if let Err(e) = spawned {
                log::error!("cannot start the manifest URL thread ({e}); URL pods keep their last good version");
            }
        }
        self.spawn(recover::watch_exits(self.ctx.clone()));
        self.spawn(watch_signals(self.ctx.events.clone()));
        for rec in recovered.pending {
            self.on_event(Event::Exit(rec));
        }
        loop {
            let mut wake = self.step();
            self.publish();
            if let Some(t) = self.trim_at {
                if t <= self.now() {
                    release_free_memory();
                    self.trim_at = None;
                } else {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
            let event = match wake {
                Some(at) => {
                    let delay = at.saturating_sub(self.now());
                    smol::future::or(async { rx.recv().await.ok() }, async {
                        smol::Timer::after(delay).await;
                        None
                    })
                    .await
                }
                None => rx.recv().await.ok(),
            };
            match event {
                Some(Event::Shutdown) => {
                    log::info!("shutting down; containers keep running and will be adopted at the next start");
                    return;
                }
                Some(e) => {
                    if self.trim_at.is_some() {
                        self.trim_at = Some(self.now() + TRIM_AFTER);
                    }
                    self.on_event(e);
                    // Take every event already queued before planning again.
                    while let Ok(e) = rx.try_recv() {
                        if matches!(e, Event::Shutdown) {
                            log::info!("shutting down; containers keep running and will be adopted at the next start");
                            return;
                        }
                        self.on_event(e);
                    }
                }
                None => {}
            }
        }
    }

    fn sources_text(&self) -> String {
        let mut s = Vec::new();
        if let Some(p) = &self.ctx.config.static_pod_path {
            s.push(format!("dir {}", p.display()));
        }
        if let Some(u) = &self.ctx.config.static_pod_url {
            s.push(format!("url {u}"));
        }
        s.join(", ")
    }

    fn find(&mut self, uid: &str) -> Option<&mut PodState> {
        self.pods.get_mut(uid)
    }
}

/// Gives memory freed by a removed pod back to the system. glibc keeps freed heap for reuse
/// (a pod with hundreds of containers leaves tens of MB behind otherwise); musl's allocator
/// returns it by itself.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
