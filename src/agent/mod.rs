//! The agent (`staticlet run`): the pure [`core`] that decides, the thin [`shell`] that runs
//! its commands against the runtime, and the wiring of the pipeline around them: sources,
//! the crun runtime, the status endpoint and the mirror sync.
//!
//! One thread owns all pod state. It wakes on an input (a source snapshot, a runtime result,
//! a container exit, a probe answer, a signal) or on the earliest deadline any pod asked for
//! (backoff, probe, a launch timeout); it never polls. Everything slow runs as a task that
//! reports back with an input, so one pod never waits for another, and nothing on that path
//! touches the network.

pub mod core;
mod error;
pub mod event;
mod perform;
pub mod shell;
mod signals;

pub use error::AgentError;
pub use perform::perform;
pub use signals::block_termination_signals;

use self::core::{Core, CoreConfig, Input};
use crate::config::Config;
use crate::runtime::crun::CrunRuntime;
use crate::runtime::rootlock::RootLock;
use crate::runtime::Layout;
use crate::source;
use crate::status::StatusBoard;
use shell::Shell;
use std::rc::Rc;
use std::sync::Arc;

/// Runs the agent with a validated configuration until SIGTERM or SIGINT.
pub fn run(config: Config, verbose: bool) -> Result<(), AgentError> {
    block_termination_signals();
    // glibc gives every thread that allocates an arena of its own; the agent's few threads
    // (probes, unpacking, the endpoint) need no such concurrency, and RSS is the budget.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    crate::sys::logging::init(verbose);
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
    let dir_err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| AgentError::Dir { path, source }
    };
    std::fs::create_dir_all(&layout.root).map_err(dir_err(&layout.root))?;
    let _lock = RootLock::acquire(&layout.root, &layout.lock_file(), "run")?;
    crate::sys::panics::install(&layout.root.join("panic.json"));
    let runtime = crate::sys::host::which(&config.runtime_path)
        .ok_or_else(|| AgentError::RuntimeNotFound(config.runtime_path.clone()))?;
    for d in [
        layout.crun_root(),
        layout.exits(),
        layout.pods(),
        layout.logs.clone(),
    ] {
        std::fs::create_dir_all(&d).map_err(dir_err(&d))?;
    }
    crate::sys::fsutil::remove_stale_temps(&layout.exits());
    let exe = std::env::current_exe().map_err(AgentError::OwnExe)?;
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
            .map_err(|source| AgentError::StatusEndpoint { addr, source })?;
    }
    // A bad kubeconfig is a usage error; an unreachable API server is not an error.
    if let Some(cluster) = crate::mirror::connect(&config)? {
        let kubelet_port =
            crate::kubelet_api::start(&config, cluster.client.clone(), board.clone())?;
        crate::mirror::start(
            &config,
            cluster,
            kubelet_port,
            board.clone(),
            recorder.clone(),
        )?;
    }
    let trust = trusted_keys(&config)?;
    let url_source = match &config.static_pod_url {
        Some(url) => Some(
            source::url::UrlSource::new(
                url,
                config.static_pod_url_header.clone(),
                config.manifest_url_ca_file.as_deref(),
                &config.root_dir,
                &config.node_name,
            )
            .map_err(AgentError::ManifestUrl)?
            .with_trust(trust.clone()),
        ),
        None => None,
    };
    let describe = format!(
        "sources: {}; pod cgroups under {}",
        sources_text(&config),
        layout.cgroup_root
    );
    let core = Core::new(CoreConfig::from_config(&config));
    let rt = Rc::new(CrunRuntime::new(config.clone(), layout, runtime, exe)?);
    let (tx, rx) = smol::channel::unbounded();
    let ex = Rc::new(smol::LocalExecutor::new());
    let mut shell = Shell::new(
        rt,
        core,
        board,
        Rc::new(event::RecorderSink(recorder)),
        ex.clone(),
        tx.clone(),
    );
    smol::block_on(ex.run(async move {
        let pending = shell.start(&describe).await;
        start_sources(&shell, &config, url_source, trust);
        shell.spawn(signals::watch_signals(tx));
        shell.run(rx, pending).await;
    }));
    Ok(())
}

/// The directory source as a task, the URL source on a thread of its own (it blocks on
/// the network); both send snapshots as inputs.
fn start_sources<R: crate::runtime::Runtime + 'static>(
    shell: &Shell<R>,
    config: &Config,
    url_source: Option<source::url::UrlSource>,
    trust: Option<Arc<source::trust::Trust>>,
) {
    if let Some(path) = config.static_pod_path.clone() {
        let src = source::dir::DirSource::new(path, config.node_name.clone()).with_trust(trust);
        shell.spawn(source::run_dir(
            src,
            config.file_check_frequency,
            shell.tx.clone(),
            Input::Sources,
        ));
    }
    if let Some(src) = url_source {
        let tx = shell.tx.clone();
        let every = config.http_check_frequency;
        let spawned = std::thread::Builder::new()
            .name("manifest-url".into())
            .spawn(move || {
                source::url::run(src, every, |snap| {
                    tx.send_blocking(Input::Sources(snap)).is_ok()
                })
            });
        if let Err(e) = spawned {
            log::error!(
                "cannot start the manifest URL thread ({e}); URL pods keep their last good version"
            );
        }
    }
}

fn sources_text(config: &Config) -> String {
    let mut s = Vec::new();
    if let Some(p) = &config.static_pod_path {
        s.push(format!("dir {}", p.display()));
    }
    if let Some(u) = &config.static_pod_url {
        s.push(format!("url {u}"));
    }
    s.join(", ")
}

/// The pinned manifest keys (`manifestPublicKeys`), if any; a key that cannot be read is a
/// usage error at start.
fn trusted_keys(config: &Config) -> Result<Option<Arc<source::trust::Trust>>, AgentError> {
    source::trust::Trust::load(&config.manifest_public_keys)
        .map(|t| t.map(Arc::new))
        .map_err(AgentError::Trust)
}
