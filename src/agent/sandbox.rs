//! A pod whose sandbox vanished under the agent (its namespace bind mounts, `/dev/shm` or
//! whole directory removed by someone: an old `drain`, a cleanup script) can never start a
//! container again: crun fails on `.../ns/net: No such file or directory` at every restart.
//! So before each start the sandbox is checked (a few `statfs` calls, no mount table), and a
//! lost one is set up again, as the kubelet recreates a pod sandbox that is gone: containers
//! still running in the old one are stopped first, so the pod's containers never end up in
//! two network namespaces.

use crate::reconcile::{PodState, SandboxState};
use crate::runtime::podsetup::Sandbox;
use crate::sys::host::{fs_type, NSFS_MAGIC, PROC_SUPER_MAGIC, TMPFS_MAGIC};
use std::path::Path;

/// The stop reason given to containers that ran in a sandbox that is gone.
const REASON: &str = "its pod sandbox is gone";

/// What is missing from a sandbox that was set up, if anything.
pub fn check(sb: &Sandbox, pod_dir: &Path) -> Result<(), String> {
    let namespaces = [&sb.namespaces.net, &sb.namespaces.uts, &sb.namespaces.ipc];
    for ns in namespaces.into_iter().flatten() {
        if !matches!(fs_type(ns), Some(NSFS_MAGIC | PROC_SUPER_MAGIC)) {
            return Err(format!("namespace {} is not mounted", ns.display()));
        }
    }
    if let Some(shm) = &sb.shm {
        if fs_type(shm) != Some(TMPFS_MAGIC) {
            return Err(format!("/dev/shm {} is not mounted", shm.display()));
        }
    }
    let own_files = sb
        .etc_files
        .iter()
        .map(|(_, p)| p)
        .chain(sb.volumes.values().filter(|p| p.starts_with(pod_dir)));
    for path in own_files {
        if !path.exists() {
            return Err(format!("{} is missing", path.display()));
        }
    }
    // Without its record the pod would be lost at the agent's next restart.
    let record = pod_dir.join("pod.json");
    if !record.is_file() {
        return Err(format!("{} is missing", record.display()));
    }
    Ok(())
}

/// Acts on a lost sandbox: stops the containers still running in it, and once none runs,
/// marks it missing so that the next plan sets it up again (one log line each). Returns
/// whether it changed anything (nothing while the stopped containers are still exiting).
pub fn on_lost(p: &mut PodState, what: &str) -> bool {
    let mut stopping = 0;
    for c in p.containers.iter_mut().filter(|c| c.running.is_some()) {
        if c.stop_reason.is_none() && !c.stopping {
            c.stop_reason = Some(REASON.into());
            stopping += 1;
        }
    }
    let busy = p
        .containers
        .iter()
        .any(|c| c.running.is_some() || c.starting);
    if stopping > 0 {
        log::warn!(
            "{}: pod sandbox is gone ({what}); stopping its {stopping} running container(s) to set it up again",
            p.pod.full_name()
        );
        true
    } else if !busy {
        // Containers stopped for this loss (and not started since) mean it was announced.
        let announced = p.containers.iter().any(|c| {
            c.running.is_none()
                && c.last.as_ref().and_then(|t| t.message.as_deref()) == Some(REASON)
        });
        let name = p.pod.full_name();
        if announced {
            log::debug!("{name}: setting the pod sandbox up again ({what})");
        } else {
            log::warn!("{name}: pod sandbox is gone ({what}); setting it up again");
        }
        p.sandbox = SandboxState::Missing;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Source};
    use crate::reconcile::Running;
    use std::fs;

    fn pod() -> PodState {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  containers:\n  - {name: a, image: busybox}\n  - {name: b, image: busybox}\n";
        let sp = manifest::load(yaml.as_bytes(), &Source::File("/m/p.yaml".into()), "n").unwrap();
        PodState::new(sp, "2026-01-01T00:00:00Z".into())
    }

    #[test]
    fn a_namespace_file_that_is_not_mounted_is_named() {
        let dir = std::env::temp_dir().join(format!("staticlet-sb-{}", std::process::id()));
        fs::create_dir_all(dir.join("ns")).unwrap();
        let mut sb = Sandbox::default();
        assert!(check(&sb, &dir).unwrap_err().contains("pod.json"));
        fs::write(dir.join("pod.json"), "{}").unwrap();
        assert_eq!(check(&sb, &dir), Ok(()));
        // A plain file where the bind mount was: what is left after an unmount.
        fs::write(dir.join("ns/net"), "").unwrap();
        sb.namespaces.net = Some(dir.join("ns/net"));
        assert!(check(&sb, &dir)
            .unwrap_err()
            .contains("ns/net is not mounted"));
        // A real namespace file passes.
        sb.namespaces.net = Some("/proc/self/ns/net".into());
        assert_eq!(check(&sb, &dir), Ok(()));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn running_containers_are_stopped_before_the_sandbox_is_set_up_again() {
        let mut p = pod();
        p.sandbox = SandboxState::Ready(Sandbox::default());
        p.containers[1].running = Some(Running {
            attempt: 0,
            id: "x-b-0".into(),
            pid: 10,
            monitor_pid: 11,
            started_at: "t".into(),
            since: Default::default(),
        });
        assert!(on_lost(&mut p, "gone"), "b is told to stop");
        assert_eq!(p.containers[1].stop_reason.as_deref(), Some(REASON));
        assert!(matches!(p.sandbox, SandboxState::Ready(_)));
        assert!(!on_lost(&mut p, "gone"), "nothing new while b stops");
        p.containers[1].running = None;
        assert!(on_lost(&mut p, "gone"));
        assert_eq!(p.sandbox, SandboxState::Missing);
    }
}
