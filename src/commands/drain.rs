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
//! period, not for their sum.

use crate::agent::actions::remove_cgroup;
use crate::agent::recover::PodRecord;
use crate::cli::{base_config, DrainCmd, Failure};
use crate::config::parse_cgroup_root;
use crate::runtime::crun::{alive, Crun};
use crate::runtime::rootlock::{LockError, RootLock};
use crate::runtime::{podsetup, Layout, StartedRecord};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The kubelet's default grace period, for a container whose pod record is gone.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How long a container may take to die after SIGKILL before drain gives up on it.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A pod directory under `<rootDir>/pods`.
struct PodDir {
    dir: PathBuf,
    uid: String,
    name: String,
    grace: Duration,
}

/// One container crun lists, with what to wait for.
struct Target {
    id: String,
    pid: i32,
    monitor: Option<i32>,
    grace: Duration,
    owned: bool,
}

impl Target {
    fn alive(&self) -> bool {
        alive(self.pid) || self.monitor.is_some_and(alive)
    }
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
    let crun = Crun {
        binary,
        root: layout.crun_root(),
    };
    let listed = if crun.root.is_dir() {
        smol::block_on(crun.list()).map_err(|e| {
            Failure::Failed(format!(
                "{e}: cannot tell which containers run; nothing was stopped"
            ))
        })?
    } else {
        Vec::new()
    };
    let pods = pod_dirs(&layout);
    let monitors = monitor_pids(&pods);
    let targets: Vec<Target> = listed
        .into_iter()
        .map(|c| {
            let owner = pods.iter().find(|p| owns(&p.uid, &c.id));
            Target {
                monitor: monitors.get(&c.id).copied(),
                grace: owner.map(|p| p.grace).unwrap_or(DEFAULT_GRACE),
                owned: owner.is_some(),
                pid: c.pid,
                id: c.id,
            }
        })
        .collect();
    let survivors = stop_all(&crun, &targets);
    let mut problems = Vec::new();
    for t in &targets {
        if let Err(e) = smol::block_on(crun.delete(&t.id)) {
            problems.push(e.to_string());
        }
        let _ = std::fs::remove_file(layout.exit_file(&t.id));
        if !t.owned {
            println!("stopped container {} (no pod record)", t.id);
        }
    }
    for pod in &pods {
        for started in glob_started(&pod.dir) {
            if let Some(instance) = started.parent() {
                podsetup::release_instance(instance);
            }
        }
        match podsetup::teardown(&pod.dir) {
            Ok(()) => println!("stopped {}", pod.name),
            Err(e) => problems.push(format!("removing {}: {e}", pod.dir.display())),
        }
        remove_cgroup(&layout.pod_cgroup(&pod.uid));
    }
    remove_own_cgroups(&layout);
    if !survivors.is_empty() {
        problems.push(format!(
            "still running {}s after SIGKILL: {}",
            KILL_WAIT.as_secs(),
            survivors.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(problems.join("\n")))
    }
}

/// Whether crun container `id` (`<first 12 of uid>-<name>-<attempt>`) belongs to pod `uid`.
fn owns(uid: &str, id: &str) -> bool {
    id.split_once('-')
        .is_some_and(|(prefix, _)| !prefix.is_empty() && uid.starts_with(prefix))
}

fn pod_dirs(layout: &Layout) -> Vec<PodDir> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(layout.pods())
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.into_iter()
        .map(|dir| {
            let uid = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let pod = PodRecord::load(&dir);
            PodDir {
                name: pod.as_ref().map(|p| p.full_name()).unwrap_or(uid.clone()),
                grace: pod
                    .map(|p| Duration::from_secs(p.pod.spec.grace_period_seconds().max(0) as u64))
                    .unwrap_or(DEFAULT_GRACE),
                uid,
                dir,
            }
        })
        .collect()
}

/// The live monitor of each recorded instance, by crun container id.
fn monitor_pids(pods: &[PodDir]) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    for pod in pods {
        for started in glob_started(&pod.dir) {
            let Some(rec) = std::fs::read(&started)
                .ok()
                .and_then(|b| serde_json::from_slice::<StartedRecord>(&b).ok())
            else {
                continue;
            };
            // .../containers/<name>/<attempt>/started.json
            let instance = started.parent();
            let attempt = instance
                .and_then(Path::file_name)
                .and_then(|a| a.to_str()?.parse::<u32>().ok());
            let name = instance
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().to_string());
            if let (Some(attempt), Some(name)) = (attempt, name) {
                out.insert(
                    Layout::container_id(&pod.uid, &name, attempt),
                    rec.monitor_pid,
                );
            }
        }
    }
    out
}

/// SIGTERM to all, SIGKILL to each once its grace period is over; returns the ids of those
/// still alive [`KILL_WAIT`] after SIGKILL.
fn stop_all(crun: &Crun, targets: &[Target]) -> Vec<String> {
    let start = Instant::now();
    for t in targets.iter().filter(|t| t.alive()) {
        let _ = smol::block_on(crun.kill(&t.id, "SIGTERM"));
    }
    let mut killed_at: Vec<Option<Instant>> = vec![None; targets.len()];
    loop {
        let mut waiting = false;
        let mut gave_up = Vec::new();
        for (t, killed) in targets.iter().zip(killed_at.iter_mut()) {
            if !t.alive() {
                continue;
            }
            match killed {
                None if start.elapsed() >= t.grace => {
                    let _ = smol::block_on(crun.kill(&t.id, "SIGKILL"));
                    *killed = Some(Instant::now());
                    waiting = true;
                }
                Some(at) if at.elapsed() >= KILL_WAIT => gave_up.push(t.id.clone()),
                _ => waiting = true,
            }
        }
        if !waiting {
            return gave_up;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// With the lock held, every pod cgroup under this root dir's cgroup parent is ours: the
/// ones left by pods whose directory is gone go too, then the parent when it is empty.
fn remove_own_cgroups(layout: &Layout) {
    for dir in crate::sys::host::cgroup_dirs(&layout.cgroup_root) {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("pod") {
                crate::sys::host::remove_cgroup_dir(&e.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Every `containers/<name>/<attempt>/started.json` of a pod.
fn glob_started(pod_dir: &Path) -> Vec<PathBuf> {
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
