//! The sweep after a crash (and the end of `drain`): removes what belongs to no kept pod
//! instance: crun containers (crun's own list is the truth, so a container without any
//! record goes too), dead instances, mounts and directories of pods without a record, and pod
//! cgroups under this agent's own cgroup parent (never another agent's). At start-up it runs
//! before any source is read, so nothing it looks at can be a pod being started.

use super::inventory::Leftovers;
use super::Context;
use crate::runtime::{SweepReport, SweepScope};
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

pub async fn sweep(ctx: &Arc<Context>, scope: &SweepScope, leftovers: Leftovers) -> SweepReport {
    let began = std::time::Instant::now();
    let (live, running) = match scope {
        SweepScope::Keep { pods, running } => (pods.clone(), running.clone()),
        SweepScope::Everything => (HashSet::new(), HashSet::new()),
    };
    let mut report = SweepReport::default();
    match ctx.crun.list().await {
        Ok(list) => {
            for c in list.into_iter().filter(|c| !running.contains(&c.id)) {
                log::info!("removing orphaned container {} ({})", c.id, c.status);
                let _ = ctx.crun.kill(&c.id, "SIGKILL").await;
                if let Err(e) = ctx.crun.delete(&c.id).await {
                    log::warn!("cannot remove orphaned container {}: {e}", c.id);
                }
                report.containers += 1;
            }
        }
        Err(e) => {
            // Without the list, at least the instances known to be dead go.
            log::warn!("{e}; orphaned containers are not removed until the next start");
            for (id, _) in &leftovers.dead {
                let _ = ctx.crun.delete(id).await;
            }
        }
    }
    let everything = matches!(scope, SweepScope::Everything);
    let ctx2 = ctx.clone();
    match crate::sys::blocking::run(move || sweep_files(&ctx2, &live, leftovers, everything)).await
    {
        Ok((dirs, cgroups)) => {
            report.pod_dirs = dirs;
            report.cgroups = cgroups;
        }
        Err(e) => log::warn!("sweep: {e}"),
    }
    let text = format!(
        "{} sweep done in {:.1}s: removed {} orphaned container(s), {} pod dir(s) without a record, {} pod cgroup(s) under {}",
        if everything { "final" } else { "startup" },
        began.elapsed().as_secs_f64(),
        report.containers,
        report.pod_dirs,
        report.cgroups,
        ctx.layout.cgroup_root
    );
    if report.containers + report.pod_dirs + report.cgroups > 0 {
        log::info!("{text}");
    } else {
        log::debug!("{text}");
    }
    report
}

/// The filesystem half of the sweep; returns how many pod dirs and cgroups it removed.
fn sweep_files(
    ctx: &Context,
    live: &HashSet<String>,
    leftovers: Leftovers,
    everything: bool,
) -> (usize, usize) {
    let layout = &ctx.layout;
    // Before their namespaces are unmounted: DEL while the plugins can still see them.
    crate::network::release_orphans(&layout.root, live);
    for (id, instance) in &leftovers.dead {
        crate::runtime::instance::release_instance(instance);
        let _ = fs::remove_file(layout.exit_file(id));
    }
    // The mount table is read once: with many orphans, once per pod dir would be quadratic.
    let pods_dir = layout.pods();
    let mut mounted: Vec<PathBuf> = crate::sys::fsutil::mounts()
        .into_iter()
        .map(|(target, _)| target)
        .filter(|t| {
            t.strip_prefix(&pods_dir)
                .ok()
                .and_then(|rest| rest.components().next())
                .is_some_and(|uid| !live.contains(uid.as_os_str().to_string_lossy().as_ref()))
        })
        .collect();
    mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in &mounted {
        crate::sys::mount::unmount(m);
    }
    let mut dirs = 0;
    for dir in &leftovers.orphan_dirs {
        log::warn!("{}: no usable pod record; removing it", dir.display());
        match fs::remove_dir_all(dir) {
            Ok(()) => dirs += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("removing {}: {e}", dir.display()),
        }
    }
    let mut cgroups = HashSet::new();
    for parent in crate::sys::host::cgroup_dirs(&layout.cgroup_root) {
        for e in fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name
                .strip_prefix("pod")
                .is_some_and(|uid| !live.contains(uid))
            {
                crate::sys::host::remove_cgroup_dir(&e.path());
                cgroups.insert(name);
            }
        }
        if everything {
            // With the root dir's lock held, the parent is ours too.
            let _ = fs::remove_dir(&parent);
        }
    }
    (dirs, cgroups.len())
}
