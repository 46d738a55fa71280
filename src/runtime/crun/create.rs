//! Creating one container instance: the image (pulled if need be), its own rootfs, the OCI
//! bundle and the monitor's instructions; everything before the monitor runs.

use super::image::{find_image, image_defaults};
use super::Context;
use crate::image::Image;
use crate::manifest::pod::Container;
use crate::manifest::StaticPod;
use crate::runtime::bundle::{self, BundleError, BundleInput};
use crate::runtime::podsetup::Sandbox;
use crate::runtime::records::write_json;
use crate::runtime::{Created, InstanceSpec, Layout, MonitorSpec, StartError};
use std::path::PathBuf;
use std::sync::Arc;

/// Checks the sandbox, readies the image (a pull or an unpack gets a thread of its own,
/// never holding up other pods' work in the pool), then rootfs, bundle and `monitor.json`.
pub async fn create(ctx: &Arc<Context>, spec: &InstanceSpec) -> Result<Created, StartError> {
    let pod_dir = ctx.layout.pod(spec.pod.uid());
    super::sandbox::check(&spec.sandbox, &pod_dir)
        .map_err(|lost| StartError::SandboxLost(lost.to_string()))?;
    let index = spec.index;
    // An image that is here and unpacked is ready at once.
    let local = crate::sys::blocking::run({
        let (ctx, pod) = (ctx.clone(), spec.pod.clone());
        move || {
            let c = pod.container(index);
            let reference = crate::image::Reference::parse(&c.image).ok()?;
            let image = ctx.store.resolve(&reference).ok()??;
            ctx.store.is_unpacked(&image).then(|| ready_image(&ctx, c))
        }
    })
    .await?;
    let (image, pulled) = match local {
        Some(ready) => ready?,
        None => {
            crate::sys::blocking::run_long({
                let (ctx, pod) = (ctx.clone(), spec.pod.clone());
                move || ready_image(&ctx, pod.container(index))
            })
            .await??
        }
    };
    crate::sys::blocking::run({
        let (ctx, pod, sb, attempt) = (
            ctx.clone(),
            spec.pod.clone(),
            spec.sandbox.clone(),
            spec.attempt,
        );
        move || prepare(&ctx, &pod, &sb, (index, attempt), image)
    })
    .await??;
    Ok(Created {
        image: spec.pod.container(index).image.clone(),
        pulled,
    })
}

fn user_of(
    pod: &StaticPod,
    c: &Container,
    image: &Image,
    rootfs: &std::path::Path,
) -> Result<(u32, u32, Vec<u32>), StartError> {
    let pod_sc = pod.pod.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let image_user = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let (mut uid, mut gid) = crate::runtime::instance::resolve_user(rootfs, &image_user)?;
    if let Some(u) = sc.run_as_user.or(pod_sc.run_as_user) {
        uid = u as u32;
        gid = crate::runtime::instance::resolve_user(rootfs, &u.to_string())
            .map(|x| x.1)
            .unwrap_or(0);
    }
    if let Some(g) = sc.run_as_group.or(pod_sc.run_as_group) {
        gid = g as u32;
    }
    Ok((
        uid,
        gid,
        crate::runtime::security::supplementary_groups(pod),
    ))
}

/// The container's image, pulled and unpacked if need be: the slow part of a first start.
/// Says whether it was pulled.
fn ready_image(ctx: &Context, c: &Container) -> Result<((Image, PathBuf), bool), StartError> {
    let (image, pulled) = find_image(ctx, c)?;
    let rootfs = ctx.store.rootfs(&image).map_err(StartError::Image)?;
    Ok(((image, rootfs), pulled))
}

fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartError {
    let path = path.to_path_buf();
    move |source| StartError::Io { what, path, source }
}

fn prepare(
    ctx: &Context,
    pod: &StaticPod,
    sb: &Sandbox,
    (index, attempt): (usize, u32),
    (image, image_rootfs): (Image, PathBuf),
) -> Result<PathBuf, StartError> {
    let c = pod.container(index);
    let instance = ctx.layout.instance(pod.uid(), &c.name, attempt);
    // A leftover from an interrupted start of the same attempt is discarded first.
    crate::runtime::instance::release_instance(&instance);
    std::fs::create_dir_all(&instance).map_err(io("creating", &instance))?;
    let rootfs = crate::runtime::instance::prepare_rootfs(&image_rootfs, &instance)
        .map_err(io("preparing the rootfs of", &instance))?;
    let (uid, gid, additional_gids) = user_of(pod, c, &image, &image_rootfs)?;
    let image_user = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone());
    let security = crate::runtime::security::decide(
        pod,
        c,
        image_user.as_deref().unwrap_or(""),
        &crate::runtime::security::Settings::from_config(&ctx.config),
    )?;
    check_propagation(c, sb)?;
    let sub_paths = crate::runtime::subpath::bind_sub_paths(c, &sb.volumes, &instance)?;
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
        security,
        allocatable: bundle::Allocatable::for_container(c, &ctx.config),
    };
    let oci = bundle::generate(&input)?;
    write_json(&instance.join("config.json"), &oci, true)?;
    let id = Layout::container_id(pod.uid(), &c.name, attempt);
    let log_path = ctx
        .layout
        .log_file(pod.namespace(), pod.name(), pod.uid(), &c.name, attempt);
    prune_logs(&log_path, attempt);
    let memory_cgroups = crate::sys::host::controller_dirs(&cgroup, "memory");
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
    write_json(&instance.join("monitor.json"), &spec, false)?;
    Ok(instance)
}

/// A volume mount that propagates needs a source that can: `Bidirectional` a shared mount,
/// `HostToContainer` a shared or slave one, as containerd checks (with its messages);
/// otherwise nothing would propagate and the pod would run without what its YAML says.
fn check_propagation(c: &Container, sb: &Sandbox) -> Result<(), StartError> {
    use crate::runtime::bundle::{propagation, Propagation};
    for m in &c.volume_mounts {
        let wanted = propagation(m.mount_propagation.as_deref());
        let Some(source) = sb.volumes.get(&m.name) else {
            continue;
        };
        if wanted == Propagation::Private {
            continue;
        }
        let p = crate::sys::mount::propagation_of(source)
            .map_err(io("reading the mount propagation of", source))?;
        let (ok, kind) = match wanted {
            Propagation::Shared => (p.shared, "shared"),
            _ => (p.shared || p.slave, "shared or slave"),
        };
        if !ok {
            return Err(StartError::Bundle(BundleError::NotPropagating {
                mount: m.name.clone(),
                path: source.display().to_string(),
                mount_point: p.mount_point.display().to_string(),
                kind,
                wanted: m.mount_propagation.clone().unwrap_or_default(),
            }));
        }
    }
    Ok(())
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
