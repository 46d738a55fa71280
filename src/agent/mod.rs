//! The agent (`staticlet run`): wires the pipeline together and runs the event loop.
//!
//! One thread owns all pod state. It wakes on an event (a source snapshot, a container that
//! started or exited, a probe answer, a signal) or on the earliest deadline any pod asked for
//! (backoff, probe); it never polls. Everything slow (starting a container, stopping one
//! within its grace period, probes) runs as a task that reports back with an event, so one
//! pod never waits for another, and nothing on that path touches the network.

pub mod actions;
pub mod recover;

use crate::cli::{run_config, Failure, RunCmd};
use crate::config::Config;
use crate::desired::{log_problem_changes, DesiredSet, Problem};
use crate::image::ImageStore;
use crate::reconcile::{
    plan, Action, PodState, ProbeKind, Running, SandboxState, StartFailure, Tick,
};
use crate::runtime::crun::Crun;
use crate::runtime::podsetup::Sandbox;
use crate::runtime::{ExitRecord, Layout};
use crate::source::{self, Snapshot, SourceKey};
use crate::status::{Shared, StatusBoard};
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

    fn on_event(&mut self, event: Event) {
        let now = self.now();
        let wall = crate::timefmt::now_rfc3339();
        match event {
            Event::Snapshot(snap) => {
                self.desired.apply(snap, &wall);
                self.sync_desired(&wall);
            }
            Event::SetupDone { uid, result } => {
                if let Some(p) = self.find(&uid) {
                    if let Err(e) = &result {
                        log::warn!("{}: cannot set up the pod: {e}", p.pod.full_name());
                    }
                    p.on_setup(result, now);
                }
            }
            Event::Started {
                uid,
                index,
                result,
                latency,
            } => {
                let Some(p) = self.pods.get_mut(&uid) else {
                    return;
                };
                let name = format!("{}/{}", p.pod.full_name(), p.containers[index].name);
                match result {
                    Ok(running) => {
                        let restart = p.containers[index].ever_started;
                        log::info!(
                            "{name}: {} (pid {}, attempt {})",
                            if restart { "restarted" } else { "started" },
                            running.pid,
                            running.attempt
                        );
                        p.on_started(index, running, now);
                        self.start_latency.observe(latency.as_secs_f64());
                    }
                    Err(f) => {
                        log::warn!("{name}: cannot start: {}: {}", f.reason, f.message);
                        p.on_start_failed(index, f, now, &wall);
                    }
                }
                let p = &self.pods[&uid];
                recover::save_container(&self.ctx.layout, p, index);
            }
            Event::Exit(rec) => self.on_exit(rec, now),
            Event::Stopped { uid, index } => {
                if let Some(p) = self.find(&uid) {
                    p.on_stopped(index);
                }
            }
            Event::Probe {
                uid,
                index,
                kind,
                success,
                message,
            } => {
                let Some(p) = self.pods.get_mut(&uid) else {
                    return;
                };
                let was_ready = p.containers[index].ready;
                if let Some(why) = p.on_probe(index, kind, success, &message, now) {
                    log::warn!(
                        "{}/{}: {why}; restarting it",
                        p.pod.full_name(),
                        p.containers[index].name
                    );
                }
                let c = &p.containers[index];
                if c.ready != was_ready {
                    log::info!(
                        "{}/{}: {}",
                        p.pod.full_name(),
                        c.name,
                        if c.ready { "ready" } else { "not ready" }
                    );
                }
            }
            Event::TornDown { uid } => {
                if let Some(p) = self.pods.remove(&uid) {
                    log::info!("{}: stopped and removed", p.pod.full_name());
                }
                self.sync_desired(&wall);
            }
            Event::Shutdown => {}
        }
    }

    fn on_exit(&mut self, rec: ExitRecord, now: Tick) {
        let exit_file = self.ctx.layout.exit_file(&rec.id);
        let instance = self
            .ctx
            .layout
            .instance(&rec.pod_uid, &rec.container, rec.attempt);
        let matched = self.pods.get_mut(&rec.pod_uid).and_then(|p| {
            let index = p.containers.iter().position(|c| c.name == rec.container)?;
            let was_running = p.containers[index]
                .running
                .as_ref()
                .is_some_and(|r| r.attempt == rec.attempt);
            p.on_exit(index, &rec, now);
            was_running.then_some(index)
        });
        if let Some(index) = matched {
            let p = &self.pods[&rec.pod_uid];
            let c = &p.containers[index];
            let t = c.last.as_ref().expect("on_exit records a termination");
            let next = if c.init && t.exit_code == 0 {
                "done".to_string()
            } else if p.finished(c) {
                "not restarted (restartPolicy)".to_string()
            } else if p.terminating || c.stopping {
                "stopped".to_string()
            } else {
                match c.backoff.until.map(|u| u.saturating_sub(now)) {
                    Some(d) if !d.is_zero() => format!("restarting in {}s", d.as_secs()),
                    _ => "restarting".to_string(),
                }
            };
            log::info!(
                "{}/{}: exited with code {} ({}); {next}",
                p.pod.full_name(),
                c.name,
                t.exit_code,
                t.reason
            );
            recover::save_container(&self.ctx.layout, p, index);
        }
        // The instance is finished either way: remove the crun container, its rootfs and
        // bundle, then the record (last, so a crash in between redoes the cleanup).
        let ctx = self.ctx.clone();
        self.spawn(async move {
            let _ = ctx.crun.delete(&rec.id).await;
            smol::unblock(move || crate::runtime::podsetup::release_instance(&instance)).await;
            let _ = std::fs::remove_file(exit_file);
        });
    }

    /// Brings the pod map in line with the desired set: new pods are added, removed or
    /// replaced ones are marked terminating.
    fn sync_desired(&mut self, wall: &str) {
        let desired = self.desired.desired();
        log_problem_changes(&self.problems, &desired.problems);
        self.problems = desired.problems.clone();
        let wanted: std::collections::HashSet<&str> =
            desired.pods.values().map(|p| p.uid()).collect();
        for p in self.pods.values_mut() {
            if !p.terminating
                && !wanted.contains(p.uid())
                && (desired.complete || desired.pods.contains_key(&p.pod.full_name()))
            {
                log::info!(
                    "{}: manifest {}; stopping it",
                    p.pod.full_name(),
                    if desired.pods.contains_key(&p.pod.full_name()) {
                        "changed"
                    } else {
                        "removed"
                    }
                );
                p.terminating = true;
            }
        }
        for pod in desired.pods.values() {
            if !self.pods.contains_key(pod.uid()) {
                log::info!("{}: new pod from {}", pod.full_name(), pod.source);
                self.pods.insert(
                    pod.uid().to_string(),
                    PodState::new(pod.clone(), wall.to_string()),
                );
            }
        }
    }

    /// Plans every pod and runs the actions; returns the earliest wake-up any pod asked for.
    fn step(&mut self) -> Option<Tick> {
        let now = self.now();
        let mut wake: Option<Tick> = None;
        let terminating_names: std::collections::HashSet<String> = self
            .pods
            .values()
            .filter(|p| p.terminating)
            .map(|p| p.pod.full_name())
            .collect();
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            let p = &self.pods[&uid];
            // A replaced pod's successor waits until the old one is gone (ports, names).
            if !p.terminating && terminating_names.contains(&p.pod.full_name()) {
                continue;
            }
            let plan = plan(p, now);
            if let Some(w) = plan.wake {
                wake = Some(wake.map_or(w, |x: Tick| x.min(w)));
            }
            for action in plan.actions {
                self.execute(&uid, action);
            }
        }
        wake
    }

    fn execute(&mut self, uid: &str, action: Action) {
        let ctx = self.ctx.clone();
        let ex = self.ex.clone();
        let spawn =
            |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>| ex.spawn(f).detach();
        let p = self.pods.get_mut(uid).expect("planned pods exist");
        match action {
            Action::SetupSandbox => {
                p.sandbox = SandboxState::SettingUp;
                let pod = p.pod.clone();
                spawn(Box::pin(actions::setup(ctx, pod)));
            }
            Action::Start { index, attempt } => {
                p.on_starting(index);
                let SandboxState::Ready(sb) = &p.sandbox else {
                    return;
                };
                spawn(Box::pin(actions::start(
                    ctx,
                    p.pod.clone(),
                    sb.clone(),
                    index,
                    attempt,
                )));
            }
            Action::Stop { index, grace } => {
                let c = &mut p.containers[index];
                c.stopping = true;
                let Some(running) = c.running.clone() else {
                    return;
                };
                let reason = c
                    .stop_reason
                    .clone()
                    .unwrap_or_else(|| "pod stopping".into());
                log::debug!(
                    "{}/{}: stopping ({reason}), grace {}s",
                    p.pod.full_name(),
                    c.name,
                    grace.as_secs()
                );
                let sb = match &p.sandbox {
                    SandboxState::Ready(sb) => sb.clone(),
                    _ => Sandbox::default(),
                };
                spawn(Box::pin(actions::stop(
                    ctx,
                    p.pod.clone(),
                    sb,
                    index,
                    running,
                    grace,
                )));
            }
            Action::Probe { index, kind } => {
                p.on_probe_started(index, kind);
                let (Some(running), SandboxState::Ready(sb)) =
                    (p.containers[index].running.clone(), &p.sandbox)
                else {
                    return;
                };
                spawn(Box::pin(actions::probe(
                    ctx,
                    p.pod.clone(),
                    sb.clone(),
                    index,
                    kind,
                    running,
                )));
            }
            Action::Teardown => {
                p.sandbox = SandboxState::TearingDown;
                spawn(Box::pin(actions::teardown(ctx, p.pod.clone())));
            }
        }
    }

    fn publish(&self) {
        let now = self.now();
        let wall = crate::timefmt::now_rfc3339();
        let items = self
            .pods
            .values()
            .map(|p| {
                let problem = self
                    .problems
                    .iter()
                    .find(|pr| pr.pod.as_deref() == Some(&p.pod.full_name()))
                    .map(|pr| pr.message.as_str());
                crate::reconcile::status::pod_json(p, now, &wall, problem)
            })
            .collect();
        self.ctx.board.publish(Shared {
            pods: items,
            problems: self.problems.clone(),
            start_latency: self.start_latency.clone(),
            log_paths: self.log_paths(),
        });
    }

    /// Where each container's current and previous logs are, for `staticlet logs`.
    fn log_paths(&self) -> Vec<crate::status::LogPaths> {
        let mut out = Vec::new();
        for p in self.pods.values() {
            for c in &p.containers {
                let attempt = c
                    .running
                    .as_ref()
                    .map(|r| r.attempt)
                    .or(c.last.as_ref().map(|t| t.attempt));
                let Some(attempt) = attempt else { continue };
                let file = |a: u32| {
                    self.ctx
                        .layout
                        .log_file(p.pod.namespace(), p.pod.name(), p.uid(), &c.name, a)
                };
                let previous = if c.running.is_some() {
                    c.last.as_ref().map(|t| file(t.attempt))
                } else {
                    attempt.checked_sub(1).map(file)
                };
                out.push(crate::status::LogPaths {
                    namespace: p.pod.namespace().into(),
                    pod: p.pod.name().into(),
                    container: c.name.clone(),
                    current: file(attempt),
                    previous,
                    running: c.running.is_some(),
                });
            }
        }
        out
    }
}

/// SIGTERM and SIGINT end the agent (not the containers).
async fn watch_signals(tx: Sender<Event>) {
    let (sig_tx, sig_rx) = smol::channel::bounded::<()>(1);
    std::thread::spawn(move || {
        // SAFETY: blocking the signals in this thread and waiting for them synchronously.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
        }
        let _ = sig_tx.send_blocking(());
    });
    if sig_rx.recv().await.is_ok() {
        let _ = tx.send(Event::Shutdown).await;
    }
}

/// Blocks SIGTERM/SIGINT in every thread (call before starting any), so only the signal
/// thread receives them.
pub fn block_termination_signals() {
    // SAFETY: plain signal-mask manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
