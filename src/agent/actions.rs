//! The actions a plan asks for, run as tasks against the real runtime; each reports back to
//! the event loop with one event.

use super::{Context, Event};
use crate::image::{Image, Reference};
use crate::manifest::pod::{Container, Handler, IntOrString};
use crate::manifest::StaticPod;
use crate::reconcile::{ProbeKind, Running, StartFailure};
use crate::runtime::bundle::{self, BundleInput, ImageDefaults};
use crate::runtime::podsetup::{self, Sandbox};
use crate::runtime::{crun, Layout, MonitorSpec, StartedRecord};
use smol::io::AsyncBufReadExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn setup(ctx: Arc<Context>, pod: StaticPod) {
    let dir = ctx.layout.pod(pod.uid());
    let record = super::recover::PodRecord::of(&pod);
    let uid = pod.uid().to_string();
    let result = smol::unblock(move || -> Result<Sandbox, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        record
            .save(&dir)
            .map_err(|e| format!("saving {}: {e}", dir.join("pod.json").display()))?;
        podsetup::setup(&pod, &dir).map_err(|e| e.to_string())
    })
    .await;
    let _ = ctx.events.send(Event::SetupDone { uid, result }).await;
}

fn failure(reason: &str, message: impl Into<String>, ran: bool) -> StartFailure {
    StartFailure {
        reason: reason.into(),
        message: message.into(),
        ran,
    }
}

fn image_defaults(image: &Image) -> ImageDefaults {
    let c = image.config.config().clone().unwrap_or_default();
    ImageDefaults {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone(),
    }
}

/// One pull at a time: a gateway's uplink is narrow, and two pods wanting one image should
/// not fetch it twice.
static PULLS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pull(config: &crate::config::Config, reference: &Reference) -> Result<(), String> {
    let _one = PULLS.lock().unwrap_or_else(|e| e.into_inner());
    let store = crate::image::ImageStore::open(&config.root_dir).map_err(|e| e.to_string())?;
    let options = crate::image::pull::PullOptions::from_config(config);
    let digest =
        crate::image::pull::pull(&store, reference, &options, &crate::timefmt::now_rfc3339())
            .map_err(|e| e.to_string())?;
    log::info!("image {reference}: pulled ({digest})");
    Ok(())
}

/// Whether an `Always` image is due for a background refresh (at most every 5 minutes, so a
/// crash-looping container does not hammer the registry).
fn refresh_due(reference: &Reference) -> bool {
    static LAST: std::sync::Mutex<Vec<(String, Instant)>> = std::sync::Mutex::new(Vec::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let key = reference.to_string();
    last.retain(|(_, t)| t.elapsed() < Duration::from_secs(300));
    if last.iter().any(|(k, _)| *k == key) {
        return false;
    }
    last.push((key, Instant::now()));
    true
}

/// Finds the container's image, honouring imagePullPolicy the offline-first way: a present
/// image is used at once; `Always` refreshes it in the background (the new version is used
/// at the next start), and a missing image is pulled before this container starts.
fn find_image(ctx: &Context, c: &Container) -> Result<Image, StartFailure> {
    let reference = Reference::parse(&c.image)
        .map_err(|e| failure("InvalidImageName", e.to_string(), false))?;
    let local = ctx
        .store
        .resolve(&reference)
        .map_err(|e| failure("ErrImagePull", e.to_string(), false))?;
    // Like podman, images named localhost/... are local builds or imports: never pulled.
    let policy = if reference.domain == "localhost" {
        "Never"
    } else {
        c.pull_policy()
    };
    match (policy, local) {
        ("Always", Some(image)) if refresh_due(&reference) => {
            let (config, r) = (ctx.config.clone(), reference.clone());
            std::thread::spawn(move || {
                if let Err(e) = pull(&config, &r) {
                    log::warn!("image {r}: pull failed ({e}); using the local image (offline-first)");
                }
            });
            Ok(image)
        }
        (_, Some(image)) => Ok(image),
        ("Never", None) => Err(failure(
            "ErrImageNeverPull",
            format!("image {reference} is not in the local store and imagePullPolicy is Never; import it with `staticlet images import`"),
            false,
        )),
        (_, None) => {
            pull(&ctx.config, &reference).map_err(|e| failure("ErrImagePull", e, false))?;
            match ctx.store.resolve(&reference) {
                Ok(Some(image)) => Ok(image),
                _ => Err(failure("ErrImagePull", format!("image {reference}: pulled but not found in the store"), false)),
            }
        }
    }
}

fn user_of(
    pod: &StaticPod,
    c: &Container,
    image: &Image,
    rootfs: &std::path::Path,
) -> Result<(u32, u32, Vec<u32>), StartFailure> {
    let pod_sc = pod.pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let image_user = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let (mut uid, mut gid) = podsetup::resolve_user(rootfs, &image_user)
        .map_err(|m| failure("CreateContainerConfigError", m, false))?;
    if let Some(u) = sc.run_as_user.or(pod_sc.run_as_user) {
        uid = u as u32;
        gid = podsetup::resolve_user(rootfs, &u.to_string())
            .map(|x| x.1)
            .unwrap_or(0);
    }
    if let Some(g) = sc.run_as_group.or(pod_sc.run_as_group) {
        gid = g as u32;
    }
    Ok((
        uid,
        gid,
        pod_sc
            .supplemental_groups
            .iter()
            .map(|g| *g as u32)
            .collect(),
    ))
}

/// Everything before the monitor runs: image, rootfs, bundle, monitor.json.
fn prepare(
    ctx: &Context,
    pod: &StaticPod,
    sb: &Sandbox,
    index: usize,
    attempt: u32,
) -> Result<PathBuf, StartFailure> {
    let spec = &pod.pod.spec;
    let n = spec.init_containers.len();
    let c = if index < n {
        &spec.init_containers[index]
    } else {
        &spec.containers[index - n]
    };
    let image = find_image(ctx, c)?;
    let image_rootfs = ctx
        .store
        .rootfs(&image)
        .map_err(|e| failure("ErrImagePull", e.to_string(), false))?;
    let instance = ctx.layout.instance(pod.uid(), &c.name, attempt);
    // A leftover from an interrupted start of the same attempt is discarded first.
    podsetup::release_instance(&instance);
    std::fs::create_dir_all(&instance).map_err(|e| {
        failure(
            "CreateContainerError",
            format!("{}: {e}", instance.display()),
            false,
        )
    })?;
    let rootfs = podsetup::prepare_rootfs(&image_rootfs, &instance)
        .map_err(|e| failure("CreateContainerError", format!("rootfs: {e}"), false))?;
    let (uid, gid, additional_gids) = user_of(pod, c, &image, &image_rootfs)?;
    let defaults = image_defaults(&image);
    let cgroup = Layout::container_cgroup(pod.uid(), &c.name, attempt);
    let input = BundleInput {
        pod,
        container: c,
        image: &defaults,
        rootfs,
        namespaces: sb.namespaces.clone(),
        etc_files: sb.etc_files.clone(),
        shm: sb.shm.clone(),
        volumes: sb.volumes.clone(),
        cgroups_path: cgroup.clone(),
        pids_limit: (ctx.config.pod_pids_limit > 0).then_some(ctx.config.pod_pids_limit),
        hostname: sb.hostname.clone(),
        host_ip: sb.host_ip.clone(),
        pod_ip: sb.pod_ip.clone(),
        uid,
        gid,
        additional_gids,
    };
    let oci =
        bundle::generate(&input).map_err(|m| failure("CreateContainerConfigError", m, false))?;
    let config_json = serde_json::to_vec_pretty(&oci).unwrap_or_default();
    crate::fsutil::write_atomic(&instance.join("config.json"), &config_json)
        .map_err(|e| failure("CreateContainerError", e.to_string(), false))?;
    let id = Layout::container_id(pod.uid(), &c.name, attempt);
    let log_path = ctx
        .layout
        .log_file(pod.namespace(), pod.name(), pod.uid(), &c.name, attempt);
    prune_logs(&log_path, attempt);
    let memory_cgroups = crate::host::cgroup_dirs(&cgroup)
        .into_iter()
        .filter(|d| {
            matches!(crate::host::cgroup_mode(), crate::host::CgroupMode::V2)
                || d.starts_with("/sys/fs/cgroup/memory")
        })
        .collect();
    let spec = MonitorSpec {
        runtime: ctx.crun.binary.clone(),
        runtime_root: ctx.crun.root.clone(),
        id: id.clone(),
        bundle: instance.clone(),
        log_path,
        log_max_size: ctx.config.container_log_max_size,
        log_max_files: ctx.config.container_log_max_files,
        exit_file: ctx.layout.exit_file(&id),
        memory_cgroups,
        pod_uid: pod.uid().to_string(),
        container: c.name.clone(),
        attempt,
    };
    crate::fsutil::write_atomic(
        &instance.join("monitor.json"),
        &serde_json::to_vec(&spec).unwrap_or_default(),
    )
    .map_err(|e| failure("CreateContainerError", e.to_string(), false))?;
    Ok(instance)
}

/// Keeps the logs of this attempt and the one before (for `logs --previous`), as the
/// kubelet keeps one dead container per container.
fn prune_logs(log_path: &std::path::Path, attempt: u32) {
    let Some(dir) = log_path.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let n: Option<u32> = name.split('.').next().and_then(|n| n.parse().ok());
        if n.is_some_and(|n| n + 1 < attempt) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

pub async fn start(ctx: Arc<Context>, pod: StaticPod, sb: Sandbox, index: usize, attempt: u32) {
    let began = Instant::now();
    let uid = pod.uid().to_string();
    let result = start_inner(&ctx, pod, sb, index, attempt).await;
    let _ = ctx
        .events
        .send(Event::Started {
            uid,
            index,
            result,
            latency: began.elapsed(),
        })
        .await;
}

async fn start_inner(
    ctx: &Arc<Context>,
    pod: StaticPod,
    sb: Sandbox,
    index: usize,
    attempt: u32,
) -> Result<Running, StartFailure> {
    let instance = smol::unblock({
        let (ctx, pod) = (ctx.clone(), pod.clone());
        move || prepare(&ctx, &pod, &sb, index, attempt)
    })
    .await?;
    let mut child = smol::process::Command::new(&ctx.exe)
        .arg("monitor")
        .arg(&instance)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            failure(
                "CreateContainerError",
                format!("cannot start the monitor {}: {e}", ctx.exe.display()),
                false,
            )
        })?;
    let stdout = child.stdout.take();
    // Reap the monitor whenever it ends; it is re-parented to init if the agent dies first.
    smol::spawn(async move {
        let _ = child.status().await;
    })
    .detach();
    let mut line = String::new();
    if let Some(out) = stdout {
        let mut reader = smol::io::BufReader::new(out);
        let read = smol::future::or(async { reader.read_line(&mut line).await.ok() }, async {
            smol::Timer::after(Duration::from_secs(120)).await;
            None
        });
        read.await;
    }
    let line = line.trim();
    if line.starts_with("started ") {
        let rec: StartedRecord = std::fs::read(instance.join("started.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                failure(
                    "StartError",
                    "the monitor reported a start but wrote no started.json",
                    true,
                )
            })?;
        let name = &pod
            .pod
            .spec
            .init_containers
            .iter()
            .chain(&pod.pod.spec.containers)
            .nth(index)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        return Ok(Running {
            attempt,
            id: Layout::container_id(pod.uid(), name, attempt),
            pid: rec.container_pid,
            monitor_pid: rec.monitor_pid,
            started_at: rec.started_at,
            since: Duration::ZERO,
        });
    }
    let message = line
        .strip_prefix("failed ")
        .unwrap_or("the monitor ended without a report")
        .to_string();
    smol::unblock(move || podsetup::release_instance(&instance)).await;
    // As the kubelet reports a container whose process could not be started: waiting with
    // RunContainerError, last state terminated with StartError, exit code 128.
    Err(failure("RunContainerError", message, true))
}

/// Runs a handler (probe or preStop) once; returns success and a message.
async fn run_handler(
    ctx: &Context,
    pod: &StaticPod,
    sb: &Sandbox,
    c: &Container,
    running: &Running,
    h: &Handler,
    timeout: Duration,
) -> (bool, String) {
    if let Some(exec) = &h.exec {
        return match ctx.crun.exec(&running.id, &exec.command, timeout).await {
            Ok((0, _)) => (true, String::new()),
            Ok((code, out)) => (
                false,
                format!(
                    "command exited with {code}: {}",
                    out.chars().take(200).collect::<String>()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
    }
    let port_of = |p: &IntOrString| -> Option<u16> {
        match p {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::Str(s) => s.parse().ok().or_else(|| {
                c.ports
                    .iter()
                    .find(|cp| cp.name.as_deref() == Some(s))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
            }),
        }
    };
    let netns = sb.namespaces.net.clone();
    if let Some(get) = &h.http_get {
        let Some(port) = port_of(&get.port) else {
            return (false, "no such port".into());
        };
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = get.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let url = format!(
            "{scheme}://{host}:{port}{}",
            get.path.as_deref().unwrap_or("/")
        );
        let headers: Vec<(String, String)> = get
            .http_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return in_netns(netns, move || {
            crate::probe::http_get(&url, &headers, timeout)
        })
        .await;
    }
    if let Some(tcp) = &h.tcp_socket {
        let Some(port) = port_of(&tcp.port) else {
            return (false, "no such port".into());
        };
        let host = tcp.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        return in_netns(netns, move || crate::probe::tcp(&host, port, timeout)).await;
    }
    let _ = pod;
    (false, "no handler".into())
}

/// Runs `f` on a fresh thread that has joined the pod's network namespace (when it has one),
/// so probes reach the pod's loopback exactly as its containers do.
async fn in_netns(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> (bool, String) + Send + 'static,
) -> (bool, String) {
    let (tx, rx) = smol::channel::bounded(1);
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            match std::fs::File::open(&ns) {
                // SAFETY: setns on an owned, open namespace file descriptor, for this thread only.
                Ok(f)
                    if unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET)
                    } == 0 => {}
                Ok(_) => {
                    let _ = tx.send_blocking((
                        false,
                        format!(
                            "setns {}: {}",
                            ns.display(),
                            std::io::Error::last_os_error()
                        ),
                    ));
                    return;
                }
                Err(e) => {
                    let _ = tx.send_blocking((false, format!("{}: {e}", ns.display())));
                    return;
                }
            }
        }
        let _ = tx.send_blocking(f());
    });
    rx.recv()
        .await
        .unwrap_or((false, "probe thread failed".into()))
}

pub async fn probe(
    ctx: Arc<Context>,
    pod: StaticPod,
    sb: Sandbox,
    index: usize,
    kind: ProbeKind,
    running: Running,
) {
    let spec = &pod.pod.spec;
    let n = spec.init_containers.len();
    let c = if index < n {
        &spec.init_containers[index]
    } else {
        &spec.containers[index - n]
    };
    let Some(p) = crate::reconcile::probe_of(c, kind) else {
        return;
    };
    let timeout = Duration::from_secs(p.timeout().max(1) as u64);
    let (success, message) = run_handler(&ctx, &pod, &sb, c, &running, &p.handler, timeout).await;
    let _ = ctx
        .events
        .send(Event::Probe {
            uid: pod.uid().to_string(),
            index,
            kind,
            success,
            message,
        })
        .await;
}

/// Waits until `pid` has exited, at most `limit`. Uses a pidfd where the kernel has them.
async fn wait_exit(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open returns a new descriptor or -1; we take ownership of it.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let deadline = Instant::now() + limit;
    if fd >= 0 {
        let owned =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        if let Ok(a) = smol::Async::new(owned) {
            return smol::future::or(async { a.readable().await.is_ok() }, async {
                smol::Timer::at(deadline).await;
                !crun::alive(pid)
            })
            .await;
        }
    }
    while Instant::now() < deadline {
        if !crun::alive(pid) {
            return true;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    !crun::alive(pid)
}

pub async fn stop(
    ctx: Arc<Context>,
    pod: StaticPod,
    sb: Sandbox,
    index: usize,
    running: Running,
    grace: Duration,
) {
    let spec = &pod.pod.spec;
    let n = spec.init_containers.len();
    let c = if index < n {
        &spec.init_containers[index]
    } else {
        &spec.containers[index - n]
    };
    let began = Instant::now();
    if let (Some(pre), false) = (
        c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()),
        grace.is_zero(),
    ) {
        // In the pod's network namespace, like a probe: an httpGet hook reaches the pod.
        let (ok, msg) = run_handler(&ctx, &pod, &sb, c, &running, pre, grace).await;
        if !ok {
            log::warn!("{}/{}: preStop hook failed: {msg}", pod.full_name(), c.name);
        }
    }
    let remaining = grace.saturating_sub(began.elapsed());
    let mut gone = false;
    if !remaining.is_zero() {
        let signal = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        if ctx.crun.kill(&running.id, &signal).await.is_ok() {
            gone = wait_exit(running.monitor_pid, remaining).await;
        }
    }
    if !gone {
        if !grace.is_zero() {
            log::info!(
                "{}/{}: still running after {}s grace; killing it",
                pod.full_name(),
                c.name,
                grace.as_secs()
            );
        }
        let _ = ctx.crun.kill(&running.id, "SIGKILL").await;
        wait_exit(running.monitor_pid, Duration::from_secs(10)).await;
    }
    let _ = ctx
        .events
        .send(Event::Stopped {
            uid: pod.uid().to_string(),
            index,
        })
        .await;
}

pub async fn teardown(ctx: Arc<Context>, pod: StaticPod) {
    let uid = pod.uid().to_string();
    // Any crun container of this pod still known to crun goes first.
    if let Ok(list) = ctx.crun.list().await {
        let prefix = format!("{}-", &uid[..uid.len().min(12)]);
        for c in list.into_iter().filter(|c| c.id.starts_with(&prefix)) {
            let _ = ctx.crun.kill(&c.id, "SIGKILL").await;
            let _ = ctx.crun.delete(&c.id).await;
        }
    }
    let dir = ctx.layout.pod(&uid);
    let logs = ctx.layout.pod_logs(pod.namespace(), pod.name(), &uid);
    let cgroup = Layout::pod_cgroup(&uid);
    smol::unblock(move || {
        if let Ok(containers) = std::fs::read_dir(dir.join("containers")) {
            for c in containers.flatten() {
                if let Ok(instances) = std::fs::read_dir(c.path()) {
                    for i in instances.flatten().filter(|i| i.path().is_dir()) {
                        podsetup::release_instance(&i.path());
                    }
                }
            }
        }
        if let Err(e) = podsetup::teardown(&dir) {
            log::warn!("removing {}: {e}", dir.display());
        }
        remove_cgroup(&cgroup);
        let _ = std::fs::remove_dir_all(&logs);
    })
    .await;
    let _ = ctx.events.send(Event::TornDown { uid }).await;
}

/// Removes a pod's cgroup directory (and empty children) from every hierarchy.
pub fn remove_cgroup(relative: &str) {
    for dir in crate::host::cgroup_dirs(relative) {
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
