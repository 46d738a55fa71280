//! A pod's sandbox on the host: set up (or adopted) before its first container, and checked
//! before each start.
//!
//! A sandbox can vanish under the agent (its namespace bind mounts, `/dev/shm` or whole
//! directory removed by someone: an old `drain`, a cleanup script); then no container of the
//! pod can start again (crun fails on `.../ns/net: No such file or directory` at every
//! restart). So each `create` checks it first (a few `statfs` calls, no mount table) and
//! reports a lost one, which the core sets up again as the kubelet recreates a pod sandbox
//! that is gone.

use super::Context;
use crate::manifest::StaticPod;
use crate::runtime::podsetup::{self, Sandbox};
use crate::runtime::records::PodRecord;
use crate::runtime::SandboxError;
use crate::sys::host::{fs_type, NSFS_MAGIC, PROC_SUPER_MAGIC, TMPFS_MAGIC};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The part of a sandbox that is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostPart {
    #[error("namespace {} is not mounted", .0.display())]
    Namespace(PathBuf),
    #[error("/dev/shm {} is not mounted", .0.display())]
    Shm(PathBuf),
    #[error("{} is missing", .0.display())]
    File(PathBuf),
}

/// Writes the pod's record, then sets up what its containers share, off the event loop.
pub async fn setup(ctx: &Arc<Context>, pod: &Arc<StaticPod>) -> Result<Sandbox, SandboxError> {
    let dir = ctx.layout.pod(pod.uid());
    let pod = pod.clone();
    let network = ctx.config.network.clone();
    let exe = ctx.exe.clone();
    let node = crate::runtime::bundle::Allocatable::for_volumes(&pod, &ctx.config);
    crate::sys::blocking::run(move || -> Result<Sandbox, SandboxError> {
        std::fs::create_dir_all(&dir).map_err(|source| SandboxError::Dir {
            path: dir.clone(),
            source,
        })?;
        PodRecord::of(&pod).save(&dir)?;
        Ok(podsetup::setup(&pod, &dir, &network, &node, &exe)?)
    })
    .await?
}

/// What is missing from a sandbox that was set up, if anything.
pub fn check(sb: &Sandbox, pod_dir: &Path) -> Result<(), LostPart> {
    let namespaces = [&sb.namespaces.net, &sb.namespaces.uts, &sb.namespaces.ipc];
    for ns in namespaces.into_iter().flatten() {
        if !matches!(fs_type(ns), Some(NSFS_MAGIC | PROC_SUPER_MAGIC)) {
            return Err(LostPart::Namespace(ns.clone()));
        }
    }
    if let Some(pid) = &sb.namespaces.pid {
        if !crate::runtime::pidns::alive(pid.parent().unwrap_or(pod_dir)) {
            return Err(LostPart::Namespace(pid.clone()));
        }
    }
    if let Some(shm) = &sb.shm {
        if fs_type(shm) != Some(TMPFS_MAGIC) {
            return Err(LostPart::Shm(shm.clone()));
        }
    }
    let own_files = sb
        .etc_files
        .iter()
        .map(|(_, p)| p)
        .chain(sb.volumes.values().filter(|p| p.starts_with(pod_dir)));
    for path in own_files {
        if !path.exists() {
            return Err(LostPart::File(path.clone()));
        }
    }
    // Without its record the pod would be lost at the agent's next restart.
    let record = pod_dir.join("pod.json");
    if !record.is_file() {
        return Err(LostPart::File(record));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_namespace_file_that_is_not_mounted_is_named() {
        let dir = std::env::temp_dir().join(format!("staticlet-sb-{}", std::process::id()));
        fs::create_dir_all(dir.join("ns")).unwrap();
        let mut sb = Sandbox::default();
        assert!(check(&sb, &dir)
            .unwrap_err()
            .to_string()
            .contains("pod.json"));
        fs::write(dir.join("pod.json"), "{}").unwrap();
        assert_eq!(check(&sb, &dir), Ok(()));
        // A plain file where the bind mount was: what is left after an unmount.
        fs::write(dir.join("ns/net"), "").unwrap();
        sb.namespaces.net = Some(dir.join("ns/net"));
        assert!(check(&sb, &dir)
            .unwrap_err()
            .to_string()
            .contains("ns/net is not mounted"));
        // A real namespace file passes.
        sb.namespaces.net = Some("/proc/self/ns/net".into());
        assert_eq!(check(&sb, &dir), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
