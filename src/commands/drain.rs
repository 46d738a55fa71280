//! `staticlet drain`: stops every pod of this root dir gracefully (preStop is the agent's
//! job; here: the stop signal, the grace period, then SIGKILL) and removes what the pods used,
//! keeping their logs. For decommissioning a gateway or an orderly power-down; the init
//! script calls it on `stop` when asked to. The agent must be stopped first, or it would
//! start the pods again.

use crate::agent::actions::remove_cgroup;
use crate::agent::recover::PodRecord;
use crate::cli::{base_config, DrainCmd, Failure};
use crate::runtime::crun::{alive, Crun};
use crate::runtime::{podsetup, Layout, StartedRecord};
use std::time::{Duration, Instant};

pub fn run(cmd: &DrainCmd) -> Result<(), Failure> {
    let mut config = base_config(cmd.config.as_ref())?;
    if let Some(d) = &cmd.root_dir {
        config.root_dir = d.clone();
    }
    if let Some(addr) = config.status_address {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
            return Err(Failure::Usage(format!(
                "an agent answers on {addr}: stop it first (it would restart the pods)"
            )));
        }
    }
    let binary = crate::host::which(&config.runtime_path)
        .ok_or_else(|| Failure::Failed(format!("{} not found", config.runtime_path.display())))?;
    let layout = Layout::new(&config.root_dir, &config.pod_logs_dir);
    let crun = Crun {
        binary,
        root: layout.crun_root(),
    };
    let dirs: Vec<_> = std::fs::read_dir(layout.pods())
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for dir in dirs {
        let uid = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let pod = PodRecord::load(&dir);
        let name = pod
            .as_ref()
            .map(|p| p.full_name())
            .unwrap_or_else(|| uid.clone());
        let grace = Duration::from_secs(
            pod.as_ref()
                .map(|p| p.pod.spec.grace_period_seconds())
                .unwrap_or(30)
                .max(0) as u64,
        );
        let mut monitors = Vec::new();
        for started in glob_started(&dir) {
            if let Some(rec) = std::fs::read(&started)
                .ok()
                .and_then(|b| serde_json::from_slice::<StartedRecord>(&b).ok())
            {
                if alive(rec.monitor_pid) {
                    monitors.push(rec.monitor_pid);
                }
            }
        }
        let prefix = format!("{}-", &uid[..uid.len().min(12)]);
        let ids: Vec<String> = smol::block_on(crun.list())
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .filter(|id| id.starts_with(&prefix))
            .collect();
        for id in &ids {
            let _ = smol::block_on(crun.kill(id, "SIGTERM"));
        }
        let deadline = Instant::now() + grace;
        while monitors.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if monitors.iter().any(|p| alive(*p)) {
            for id in &ids {
                let _ = smol::block_on(crun.kill(id, "SIGKILL"));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while monitors.iter().any(|p| alive(*p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for id in &ids {
            let _ = smol::block_on(crun.delete(id));
            let _ = std::fs::remove_file(layout.exit_file(id));
        }
        for started in glob_started(&dir) {
            if let Some(instance) = started.parent() {
                podsetup::release_instance(instance);
            }
        }
        podsetup::teardown(&dir).map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
        remove_cgroup(&Layout::pod_cgroup(&uid));
        println!("stopped {name}");
    }
    Ok(())
}

/// Every `containers/<name>/<attempt>/started.json` of a pod.
fn glob_started(pod_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for c in std::fs::read_dir(pod_dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for i in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            let p = i.path().join("started.json");
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}
