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
    let runtime = crate::host::which(&config.runtime_path).ok_or_else(|| {
        Failure::Usage(format!(
            "runtime {} not found on PATH; install crun or set --runtime",
            config.runtime_path.display()
        ))
    })?;
    let layout = Layout::new(&config.root_dir, &config.pod_logs_dir);
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
    if let Some(addr) = config.status_address {
        crate::status::server::start(addr, board.clone())
            .map_err(|e| Failure::Failed(format!("status endpoint {addr}: {e}")))?;
    }
    if config.kubeconfig.is_some() {
        // A bad kubeconfig is a usage error; an unreachable API server is not an error.
        crate::mirror::start(&config, board.clone()).map_err(|e| match e {
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
}

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
        let pending_exits =
            recover::recover(&self.ctx, &mut self.pods, &mut self.desired, now).await;
        log::info!(
            "staticlet {} on node {}: {} pod(s) adopted; sources: {}",
            env!("CARGO_PKG_VERSION"),
            self.ctx.config.node_name,
            self.pods.len(),
            self.sources_text()
        );
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
            std::thread::Builder::new()
                .name("manifest-url".into())
                .spawn(move || {
                    source::url::run(src, every, |snap| {
                        tx.send_blocking(Event::Snapshot(snap)).is_ok()
                    })
                })
                .expect("spawning the manifest URL thread");
        }
        self.spawn(recover::watch_exits(self.ctx.clone()));
        self.spawn(watch_signals(self.ctx.events.clone()));
        for rec in pending_exits {
            self.on_event(Event::Exit(rec));
        }
        loop {
            let wake = self.step();
            self.publish();
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
