//! Starting one container instance: rootfs, bundle, monitor, and the monitor's report.

use super::image::{failure, find_image, image_defaults};
use super::{Context, Event};
use crate::image::Image;
use crate::manifest::pod::Container;
use crate::manifest::StaticPod;
use crate::reconcile::{Running, StartFailure};
use crate::runtime::bundle::{self, BundleInput};
use crate::runtime::podsetup::{self, Sandbox};
use crate::runtime::{Layout, MonitorSpec, StartedRecord};
use smol::io::AsyncBufReadExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
/// The container's image, pulled and unpacked if need be: the slow part of a first start.
fn ready_image(
    ctx: &Context,
    pod: &StaticPod,
    index: usize,
) -> Result<(Image, PathBuf), StartFailure> {
    let image = find_image(ctx, pod, index)?;
    let rootfs = ctx
        .store
        .rootfs(&image)
        .map_err(|e| failure("ErrImagePull", e.to_string(), false))?;
    Ok((image, rootfs))
}

fn prepare(
    ctx: &Context,
    pod: &StaticPod,
    sb: &Sandbox,
    (index, attempt): (usize, u32),
    (image, image_rootfs): (Image, PathBuf),
) -> Result<PathBuf, StartFailure> {
    let c = pod.container(index);
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
    let sub_paths = crate::runtime::subpath::bind_sub_paths(c, &sb.volumes, &instance)
        .map_err(|e| failure("CreateContainerConfigError", e.to_string(), false))?;
    let defaults = image_defaults(&image);
    let cgroup = ctx.layout.container_cgroup(pod.uid(), &c.name, attempt);
    let input = BundleInput {
        pod,
        container: c,
        image: &defaults,
        rootfs,
        namespaces: sb.namespaces.clone(),
        etc_files: sb.etc_files.clone(),
        shm: sb.shm.clone(),
        volumes: sb.volumes.clone(),
        sub_paths,
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
    crate::fsutil::write_replace(&instance.join("config.json"), &config_json)
        .map_err(|e| failure("CreateContainerError", e.to_string(), false))?;
    let id = Layout::container_id(pod.uid(), &c.name, attempt);
    let log_path = ctx
        .layout
        .log_file(pod.namespace(), pod.name(), pod.uid(), &c.name, attempt);
    prune_logs(&log_path, attempt);
    let memory_cgroups = crate::host::controller_dirs(&cgroup, "memory");
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
    crate::fsutil::write_replace(
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

/// Ends a start that took too long: the monitor's whole process group (it is a session
/// leader, so `crun run` in progress goes with it), then whatever crun made of the container.
/// Fails when the container cannot be confirmed gone, so that no next attempt starts.
async fn abandon_attempt(
    ctx: &Context,
    monitor_pid: i32,
    id: &str,
    monitor_ended: smol::channel::Receiver<()>,
) -> Result<(), StartFailure> {
    // SAFETY: kill(2) on our own child's process group and pid.
    unsafe {
        libc::kill(-monitor_pid, libc::SIGKILL);
        libc::kill(monitor_pid, libc::SIGKILL);
    }
    smol::future::or(
        async {
            let _ = monitor_ended.recv().await;
        },
        async {
            smol::Timer::after(Duration::from_secs(10)).await;
        },
    )
    .await;
    for _ in 0..10 {
        let _ = ctx.crun.kill(id, "SIGKILL").await;
        let _ = ctx.crun.delete(id).await;
        match ctx.crun.list().await {
            Ok(list) if !list.iter().any(|c| c.id == id) => return Ok(()),
            _ => smol::Timer::after(Duration::from_millis(500)).await,
        };
    }
    Err(failure(
        "RunContainerError",
        format!("container {id} could not be removed after a start that timed out; not starting another"),
        false,
    ))
}

pub async fn start(
    ctx: Arc<Context>,
    pod: Arc<StaticPod>,
    sb: Sandbox,
    index: usize,
    attempt: u32,
) {
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
    pod: Arc<StaticPod>,
    sb: Sandbox,
    index: usize,
    attempt: u32,
) -> Result<Running, StartFailure> {
    let job_failed =
        |e: crate::agent::blocking::JobError| failure("CreateContainerError", e.to_string(), false);
    // An image that is here and unpacked is ready at once; a pull (the network) or an unpack
    // gets a thread of its own, never holding up other pods' work in the pool.
    let local = crate::agent::blocking::run({
        let (ctx, pod) = (ctx.clone(), pod.clone());
        move || {
            let c = pod.container(index);
            let reference = crate::image::Reference::parse(&c.image).ok()?;
            let image = ctx.store.resolve(&reference).ok()??;
            ctx.store
                .is_unpacked(&image)
                .then(|| ready_image(&ctx, &pod, index))
        }
    })
    .await
    .map_err(job_failed)?;
    let image = match local {
        Some(ready) => ready?,
        None => crate::agent::blocking::run_long({
            let (ctx, pod) = (ctx.clone(), pod.clone());
            move || ready_image(&ctx, &pod, index)
        })
        .await
        .map_err(job_failed)??,
    };
    let instance = crate::agent::blocking::run({
        let (ctx, pod) = (ctx.clone(), pod.clone());
        move || prepare(&ctx, &pod, &sb, (index, attempt), image)
    })
    .await
    .map_err(job_failed)??;
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
    let monitor_pid = child.id() as i32;
    // Reap the monitor whenever it ends; it is re-parented to init if the agent dies first.
    let (ended_tx, ended_rx) = smol::channel::bounded::<()>(1);
    smol::spawn(async move {
        let _ = child.status().await;
        let _ = ended_tx.send(()).await;
    })
    .detach();
    let mut line = String::new();
    let timeout = ctx.config.runtime_request_timeout;
    let mut reported = false;
    if let Some(out) = stdout {
        let mut reader = smol::io::BufReader::new(out);
        let read = smol::future::or(
            async { Some(reader.read_line(&mut line).await.is_ok()) },
            async {
                smol::Timer::after(timeout).await;
                None
            },
        );
        reported = read.await.is_some();
    }
    if !reported {
        // The runtime is still busy (a loaded host) or hung. A new attempt must never run
        // beside this one: end the monitor and whatever crun made, and confirm it is gone.
        let id = Layout::container_id(pod.uid(), &pod.container(index).name, attempt);
        log::warn!(
            "{}/{}: the runtime has not started the container after {}s; stopping that attempt",
            pod.full_name(),
            pod.container(index).name,
            timeout.as_secs()
        );
        abandon_attempt(ctx, monitor_pid, &id, ended_rx).await?;
        crate::agent::blocking::run_logged("releasing a timed-out start", move || {
            podsetup::release_instance(&instance)
        })
        .await;
        return Err(failure(
            "RunContainerError",
            format!(
                "the runtime did not start the container within {}s (runtimeRequestTimeout)",
                timeout.as_secs()
            ),
            true,
        ));
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
    crate::agent::blocking::run_logged("releasing a failed start", move || {
        podsetup::release_instance(&instance)
    })
    .await;
    // As the kubelet reports a container whose process could not be started: waiting with
    // RunContainerError, last state terminated with StartError, exit code 128.
    Err(failure("RunContainerError", message, true))
}
