//! Containers outlive the agent. At start-up the agent reads what it left on disk, adopts
//! every container whose monitor still runs (same PIDs, logs continue), collects the exit
//! records of those that ended while it was down, and removes what nobody wants any more:
//! crun containers, mounts and cgroups of pods it has no record of.

use super::{Context, Event};
use crate::desired::DesiredSet;
use crate::manifest::{Source, StaticPod};
use crate::reconcile::{PodState, Running, Terminated, Tick};
use crate::runtime::{crun, podsetup, ExitRecord, Layout, StartedRecord};
use crate::source::SourceKey;
use inotify::{Inotify, WatchMask};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `pods/<uid>/pod.json`: the manifest the pod runs, with its defaults and first-seen time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub source: Source,
    pub pod: Value,
}

impl PodRecord {
    pub fn of(pod: &StaticPod) -> PodRecord {
        PodRecord {
            source: pod.source.clone(),
            pod: pod.raw.clone(),
        }
    }

    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        crate::sys::fsutil::write_replace(
            &dir.join("pod.json"),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }

    pub fn load(dir: &Path) -> Option<StaticPod> {
        let rec: PodRecord = serde_json::from_slice(&fs::read(dir.join("pod.json")).ok()?).ok()?;
        let pod = serde_json::from_value(rec.pod.clone()).ok()?;
        Some(StaticPod {
            pod,
            raw: rec.pod,
            source: rec.source,
        })
    }
}

/// `containers/<name>/status.json`: what must survive an agent restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerRecord {
    restart_count: u32,
    ever_started: bool,
    last: Option<Terminated>,
    backoff_delay_secs: Option<u64>,
}

pub fn save_container(layout: &Layout, p: &PodState, index: usize) {
    let c = &p.containers[index];
    let rec = ContainerRecord {
        restart_count: c.restart_count,
        ever_started: c.ever_started,
        last: c.last.clone(),
        backoff_delay_secs: c.backoff.delay.map(|d| d.as_secs()),
    };
    let dir = layout.container(p.uid(), &c.name);
    let _ = fs::create_dir_all(&dir);
    if let Err(e) = crate::sys::fsutil::write_replace(
        &dir.join("status.json"),
        &serde_json::to_vec(&rec).unwrap_or_default(),
    ) {
        log::warn!("{}/{}: cannot save status: {e}", p.pod.full_name(), c.name);
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

fn is_uid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The source key a recorded pod belongs to, if that source is still configured.
fn source_key(ctx: &Context, source: &Source) -> Option<SourceKey> {
    match source {
        Source::File(path) => {
            let dir = ctx.config.static_pod_path.as_ref()?;
            (path.starts_with(dir) || path == dir).then(|| SourceKey::Dir(dir.clone()))
        }
        Source::Url(url) => (ctx.config.static_pod_url.as_deref() == Some(url.as_str()))
            .then(|| SourceKey::Url(url.clone())),
    }
}

/// What recovery found to clean up; removed by [`sweep`] once the adopted pods are published.
#[derive(Default)]
pub struct Leftovers {
    /// Pod directories without a usable record.
    orphan_dirs: Vec<PathBuf>,
    /// Instances that ended or were superseded: crun id and instance directory.
    dead: Vec<(String, PathBuf)>,
}

/// What recovery hands the agent.
pub struct Recovered {
    /// Exit records written while the agent was down, to apply as events.
    pub pending: Vec<ExitRecord>,
    pub leftovers: Leftovers,
}

/// Reads what the agent left on disk and adopts what still runs. It only reads (a record per
/// pod and container), so the adopted pods can be published at once; removing what nobody
/// wants is [`sweep`]'s job, after that.
pub fn recover(
    ctx: &Arc<Context>,
    pods: &mut BTreeMap<String, PodState>,
    desired: &mut DesiredSet,
    now: Tick,
) -> Recovered {
    let mut pending = Vec::new();
    let mut leftovers = Leftovers::default();
    let layout = &ctx.layout;
    let entries: Vec<PathBuf> = fs::read_dir(layout.pods())
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for dir in entries {
        let uid = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Some(pod) = PodRecord::load(&dir).filter(|p| is_uid(&uid) && p.uid() == uid) else {
            leftovers.orphan_dirs.push(dir);
            continue;
        };
        let start_time = pod.seen().unwrap_or_default().to_string();
        let mut st = PodState::new(pod.clone(), start_time);
        match source_key(ctx, &pod.source) {
            Some(key) => {
                let origin = match &pod.source {
                    Source::File(p) => p.clone(),
                    Source::Url(u) => {
                        // The same origin the URL source gives the item: the name as written.
                        let suffix = format!("-{}", ctx.config.node_name);
                        let name = pod.name().strip_suffix(&suffix).unwrap_or(pod.name());
                        PathBuf::from(format!("{u}#{}/{name}", pod.namespace()))
                    }
                };
                desired.seed(key, origin, pod.clone());
            }
            None => {
                log::info!(
                    "{}: its source ({}) is no longer configured; stopping it",
                    pod.full_name(),
                    pod.source
                );
                st.terminating = true;
            }
        }
        for index in 0..st.containers.len() {
            let name = st.containers[index].name.clone();
            let cdir = layout.container(&uid, &name);
            if let Some(rec) = read_json::<ContainerRecord>(&cdir.join("status.json")) {
                let c = &mut st.containers[index];
                c.restart_count = rec.restart_count;
                c.ever_started = rec.ever_started;
                c.last = rec.last;
                c.backoff.delay = rec.backoff_delay_secs.map(Duration::from_secs);
            }
            let mut attempts: Vec<u32> = fs::read_dir(&cdir)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            attempts.sort();
            let latest = attempts.last().copied();
            for attempt in attempts {
                let instance = layout.instance(&uid, &name, attempt);
                let id = Layout::container_id(&uid, &name, attempt);
                let started: Option<StartedRecord> = read_json(&instance.join("started.json"));
                let exit: Option<ExitRecord> = read_json(&layout.exit_file(&id));
                let running = started.as_ref().map(|s| Running {
                    attempt,
                    id: id.clone(),
                    pid: s.container_pid,
                    monitor_pid: s.monitor_pid,
                    started_at: s.started_at.clone(),
                    since: since(now, &s.started_at),
                });
                match (running, exit) {
                    (Some(r), Some(rec)) if Some(attempt) == latest => {
                        st.containers[index].running = Some(r);
                        st.containers[index].ever_started = true;
                        pending.push(rec);
                    }
                    (Some(r), None) if Some(attempt) == latest && crun::alive(r.monitor_pid) => {
                        log::info!(
                            "{}/{name}: adopted (pid {}, attempt {attempt})",
                            pod.full_name(),
                            r.pid
                        );
                        st.on_adopted(index, r, now);
                    }
                    (started, _) => {
                        // Started before but its monitor is gone with no record (a reboot, or
                        // the monitor was killed): the exit status is unknown.
                        if started.is_some() && Some(attempt) == latest {
                            st.containers[index].last = Some(Terminated {
                                attempt,
                                exit_code: 137,
                                signal: None,
                                reason: "ContainerStatusUnknown".into(),
                                message: Some("the container was not running when staticlet started and its exit status was lost".into()),
                                started_at: started.map(|s| s.started_at),
                                finished_at: crate::sys::timefmt::now_rfc3339(),
                            });
                            st.containers[index].ever_started = true;
                        }
                        leftovers.dead.push((id, instance));
                    }
                }
            }
        }
        pods.insert(uid, st);
    }
    Recovered { pending, leftovers }
}

fn since(now: Tick, started_at: &str) -> Tick {
    let ran = crate::sys::timefmt::parse_rfc3339(started_at)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    now.saturating_sub(ran)
}

/// Removes what belongs to no known pod instance: crun containers (crun's own list is the
/// truth, so a container without any record goes too), dead instances, mounts and
/// directories of pods without a record, and pod cgroups under this agent's own cgroup
/// parent (never another agent's). Runs before any source is read, so nothing it looks at
/// can be a pod being started.
pub async fn sweep(ctx: &Arc<Context>, pods: &BTreeMap<String, PodState>, leftovers: Leftovers) {
    let began = std::time::Instant::now();
    let known: HashSet<String> = pods
        .values()
        .flat_map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.running.as_ref().map(|r| r.id.clone()))
        })
        .collect();
    let mut containers = 0;
    match ctx.crun.list().await {
        Ok(list) => {
            for c in list.into_iter().filter(|c| !known.contains(&c.id)) {
                log::info!("removing orphaned container {} ({})", c.id, c.status);
                let _ = ctx.crun.kill(&c.id, "SIGKILL").await;
                if let Err(e) = ctx.crun.delete(&c.id).await {
                    log::warn!("cannot remove orphaned container {}: {e}", c.id);
                }
                containers += 1;
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
    let ctx2 = ctx.clone();
    let live: HashSet<String> = pods.keys().cloned().collect();
    let (dirs, cgroups) =
        match crate::agent::blocking::run(move || sweep_files(&ctx2, &live, leftovers)).await {
            Ok(n) => n,
            Err(e) => {
                log::warn!("startup sweep: {e}");
                (0, 0)
            }
        };
    let text = format!(
        "startup sweep done in {:.1}s: removed {containers} orphaned container(s), {dirs} pod dir(s) without a record, {cgroups} pod cgroup(s) under {}",
        began.elapsed().as_secs_f64(),
        ctx.layout.cgroup_root
    );
    if containers + dirs + cgroups > 0 {
        log::info!("{text}");
    } else {
        log::debug!("{text}");
    }
}

/// The filesystem half of the sweep; returns how many pod dirs and cgroups it removed.
fn sweep_files(ctx: &Context, live: &HashSet<String>, leftovers: Leftovers) -> (usize, usize) {
    let layout = &ctx.layout;
    for (id, instance) in &leftovers.dead {
        podsetup::release_instance(instance);
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
        podsetup::unmount(m);
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
    }
    (dirs, cgroups.len())
}

/// Watches the exits directory; every record a monitor writes becomes an event.
pub async fn watch_exits(ctx: Arc<Context>) {
    let dir = ctx.layout.exits();
    let inotify = match Inotify::init().and_then(|i| {
        i.watches()
            .add(&dir, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)?;
        smol::Async::new(i)
    }) {
        Ok(i) => i,
        Err(e) => {
            log::error!(
                "cannot watch {}: {e}; container exits are only seen at the next relist",
                dir.display()
            );
            return;
        }
    };
    let send = |name: &str| {
        if name.starts_with('.') || !name.ends_with(".json") {
            return None;
        }
        read_json::<ExitRecord>(&dir.join(name))
    };
    // Records written between recovery and the watch.
    let existing: Vec<String> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    for name in existing {
        if let Some(rec) = send(&name) {
            let _ = ctx.events.send(Event::Exit(rec)).await;
        }
    }
    let mut buffer = vec![0u8; 8192];
    let mut inotify = inotify;
    loop {
        // SAFETY: read_events does not close or replace the descriptor.
        let names = unsafe {
            inotify.read_with_mut(|i| {
                let events = i.read_events(&mut buffer)?;
                Ok(events
                    .filter_map(|e| e.name.map(|n| n.to_string_lossy().to_string()))
                    .collect::<Vec<_>>())
            })
        }
        .await;
        let Ok(names) = names else { continue };
        for name in names {
            if let Some(rec) = send(&name) {
                if ctx.events.send(Event::Exit(rec)).await.is_err() {
                    return;
                }
            }
        }
    }
}
