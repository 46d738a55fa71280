//! The actions a plan asks for, run as tasks against the real runtime; each reports back to
//! the event loop with one event. One file per operation: image, start, handlers (probes and
//! hooks), stop; setting up and tearing down the pod's shared parts live here.

mod handlers;
mod image;
mod start;
mod stop;

pub use handlers::probe;
pub use start::start;
pub use stop::stop;

use super::{Context, Event};
use crate::manifest::StaticPod;
use crate::runtime::podsetup::{self, Sandbox};
use std::sync::Arc;
pub async fn setup(ctx: Arc<Context>, pod: Arc<StaticPod>) {
    let dir = ctx.layout.pod(pod.uid());
    let record = super::recover::PodRecord::of(&pod);
    let uid = pod.uid().to_string();
    let result = crate::agent::blocking::run(move || -> Result<Sandbox, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        record
            .save(&dir)
            .map_err(|e| format!("saving {}: {e}", dir.join("pod.json").display()))?;
        podsetup::setup(&pod, &dir).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let _ = ctx.events.send(Event::SetupDone { uid, result }).await;
}

pub async fn teardown(ctx: Arc<Context>, pod: Arc<StaticPod>) {
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
    let cgroup = ctx.layout.pod_cgroup(&uid);
    crate::agent::blocking::run_logged("tearing down a pod", move || {
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
    for dir in crate::sys::host::cgroup_dirs(relative) {
        if let Ok(children) = std::fs::read_dir(&dir) {
            for c in children.flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
