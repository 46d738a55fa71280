//! `staticlet drain`: stops every pod of this root dir gracefully (preStop is the agent's
//! job; here: the stop signal, the grace period, then SIGKILL) and removes what the pods used,
//! keeping their logs. For decommissioning a gateway or an orderly power-down; the init
//! script calls it on `stop` when asked to.
//!
//! A live agent would start the pods again and then crash-loop them on their vanished
//! sandboxes, so drain takes the root dir's lock first and refuses while an agent holds it,
//! whatever its status address. The runtime's own list (`crun --root <rootDir>/crun list`) is
//! the truth about what runs: a container without a pod record is stopped too. Every
//! container gets its stop signal at once, so a power-down waits for the longest grace
//! period, not for their sum. It works through the same [`Runtime`] as the agent: the
//! inventory, a stop per container, a teardown per pod, and a final sweep.

use crate::cli::{base_config, DrainCmd, Failure};
use crate::config::parse_cgroup_root;
use crate::runtime::crun::{alive, CrunRuntime};
use crate::runtime::rootlock::{LockError, RootLock};
use crate::runtime::{FoundInstance, Layout, Runtime, StopSpec, SweepScope};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The kubelet's default grace period, for a container whose pod record is gone.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// One container to stop, and whose it is.
struct Target {
    spec: StopSpec,
    /// The pod it belongs to, by uid, when that pod has a record.
    owner: Option<String>,
}

pub fn run(cmd: &DrainCmd) -> Result<(), Failure> {
    let mut config = base_config(cmd.config.as_ref())?;
    if let Some(d) = &cmd.root_dir {
        config.root_dir = d.clone();
    }
    if let Some(r) = &cmd.cgroup_root {
        config.cgroup_root =
            Some(parse_cgroup_root(r).map_err(|m| Failure::Usage(format!("--cgroup-root: {m}")))?);
    }
    let layout = Layout::new(
        &config.root_dir,
        &config.pod_logs_dir,
        &config.cgroup_root(),
    );
    if !layout.root.is_dir() {
        println!("nothing to drain: {} does not exist", layout.root.display());
        return Ok(());
    }
    let _lock =
        RootLock::acquire(&layout.root, &layout.lock_file(), "drain").map_err(|e| match e {
            LockError::Held { .. } => Failure::Usage(format!(
                "{e}; stop it first (an agent would start the pods again)"
            )),
            LockError::Io { .. } => Failure::Failed(e.to_string()),
        })?;
    let binary = crate::sys::host::which(&config.runtime_path)
        .ok_or_else(|| Failure::Failed(format!("{} not found", config.runtime_path.display())))?;
    // The runtime's own warnings (a container it cannot remove) go to stderr.
    crate::sys::logging::init(false);
    let listed = layout.crun_root().is_dir();
    let exe = std::env::current_exe().unwrap_or_default();
    let rt = Rc::new(
        CrunRuntime::new(config, layout, binary, exe)
            .map_err(|e| Failure::Failed(e.to_string()))?,
    );
    let ex = Rc::new(smol::LocalExecutor::new());
    let problems = smol::block_on(ex.run(drain(rt, ex.clone(), listed)))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(problems.join("\n")))
    }
}

/// Stops every container at once (each pod's grace period, 30 s without a record), then
/// removes the pods and whatever else is left; returns the problems.
async fn drain(
    rt: Rc<CrunRuntime>,
    ex: Rc<smol::LocalExecutor<'static>>,
    listed: bool,
) -> Result<Vec<String>, Failure> {
    let inventory = rt.inventory().await;
    let strays = match inventory.strays {
        Ok(s) => s,
        Err(e) if listed => {
            return Err(Failure::Failed(format!(
                "{e}: cannot tell which containers run; nothing was stopped"
            )))
        }
        Err(_) => Vec::new(),
    };
    let graces: Vec<(String, Duration)> = inventory
        .pods
        .iter()
        .map(|p| (p.pod.uid().to_string(), grace(&p.pod)))
        .collect();
    let mut targets = Vec::new();
    for p in &inventory.pods {
        for c in &p.containers {
            let r = match &c.latest {
                Some(FoundInstance::Running(r) | FoundInstance::Exited(r, _)) => r,
                _ => continue,
            };
            if !alive(r.pid) && !alive(r.monitor_pid) {
                continue;
            }
            targets.push(Target {
                spec: stop_spec(&r.id, alive_of(r.monitor_pid, r.pid), grace(&p.pod)),
                owner: Some(p.pod.uid().to_string()),
            });
        }
    }
    for s in &strays {
        let owner = graces.iter().find(|(uid, _)| owns(uid, &s.id));
        targets.push(Target {
            spec: stop_spec(&s.id, s.pid, owner.map_or(DEFAULT_GRACE, |o| o.1)),
            owner: owner.map(|o| o.0.clone()),
        });
    }
    // The stop signal to all at once: a power-down waits for the longest grace period,
    // not for their sum.
    let stops: Vec<_> = targets
        .iter()
        .map(|t| {
            let (rt, spec) = (rt.clone(), t.spec.clone());
            ex.spawn(async move { rt.stop(&spec).await })
        })
        .collect();
    let mut survivors = Vec::new();
    for (t, stop) in targets.iter().zip(stops) {
        if !stop.await.gone {
            survivors.push(t.spec.id.clone());
        }
        if t.owner.is_none() {
            println!("stopped container {} (no pod record)", t.spec.id);
        }
    }
    let mut problems = Vec::new();
    for p in inventory.pods {
        let pod = Arc::new(p.pod);
        match rt.teardown(&pod, true).await {
            Ok(()) => println!("stopped {}", pod.full_name()),
            Err(e) => problems.push(format!("{}: {e}", pod.full_name())),
        }
    }
    rt.sweep(&SweepScope::Everything).await;
    if !survivors.is_empty() {
        problems.push(format!(
            "still running {}s after SIGKILL: {}",
            crate::runtime::crun::KILL_WAIT.as_secs(),
            survivors.join(", ")
        ));
    }
    Ok(problems)
}

fn grace(pod: &crate::manifest::StaticPod) -> Duration {
    Duration::from_secs(pod.pod.spec.grace_period_seconds().max(0) as u64)
}

/// The monitor while it lives, else the container itself.
fn alive_of(monitor: i32, pid: i32) -> i32 {
    if alive(monitor) {
        monitor
    } else {
        pid
    }
}

/// drain sends the stop signal only (running hooks is the agent's job).
fn stop_spec(id: &str, wait_pid: i32, grace: Duration) -> StopSpec {
    StopSpec {
        id: id.to_string(),
        wait_pid,
        signal: "SIGTERM".into(),
        grace,
        pre_stop: None,
    }
}

/// Whether crun container `id` (`<first 12 of uid>-<name>-<attempt>`) belongs to pod `uid`.
fn owns(uid: &str, id: &str) -> bool {
    id.split_once('-')
        .is_some_and(|(prefix, _)| !prefix.is_empty() && uid.starts_with(prefix))
}
