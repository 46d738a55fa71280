//! Tearing a pod down once its containers have stopped: any crun container of the pod still
//! known to crun, every instance's rootfs and bundle, the sandbox (mounts first), the pod's
//! cgroup, and its logs unless they are to be kept (`drain`).

use super::Context;
use crate::manifest::StaticPod;
use crate::runtime::{podsetup, TeardownError};
use std::sync::Arc;

pub async fn teardown(
    ctx: &Arc<Context>,
    pod: &Arc<StaticPod>,
    keep_logs: bool,
) -> Result<(), TeardownError> {
    let uid = pod.uid().to_string();
    let prefix = crate::runtime::layout::Layout::pod_id_prefix(&uid);
    let ids = match ctx.crun.ids() {
        Ok(ids) => ids,
        Err(e) => {
            log::debug!("reading crun's state directory: {e}; asking crun");
            let listed = ctx.crun.list().await.unwrap_or_default();
            listed.into_iter().map(|c| c.id).collect()
        }
    };
    // `delete --force` kills what still runs first: one crun call per container.
    for id in ids.into_iter().filter(|id| id.starts_with(&prefix)) {
        let _ = ctx.crun.delete(&id).await;
    }
    let dir = ctx.layout.pod(&uid);
    let logs = ctx.layout.pod_logs(pod.namespace(), pod.name(), &uid);
    let cgroup = ctx.layout.pod_cgroup(&uid);
    crate::sys::blocking::run(move || {
        if let Ok(containers) = std::fs::read_dir(dir.join("containers")) {
            for c in containers.flatten() {
                if let Ok(instances) = std::fs::read_dir(c.path()) {
                    for i in instances.flatten().filter(|i| i.path().is_dir()) {
                        crate::runtime::instance::release_instance(&i.path());
                    }
                }
            }
        }
        let removed = podsetup::teardown(&dir).map_err(|source| TeardownError::Remove {
            path: dir.clone(),
            source,
        });
        remove_cgroup(&cgroup);
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&logs);
        }
        removed
    })
    .await?
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
