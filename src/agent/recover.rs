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
        crate::fsutil::write_replace(
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
    if let Err(e) = crate::fsutil::write_replace(
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

pub async fn recover(
    ctx: &Arc<Context>,
    pods: &mut BTreeMap<String, PodState>,
    desired: &mut DesiredSet,
    now: Tick,
) -> Vec<ExitRecord> {
    let mut pending = Vec::new();
    let mut adopted: HashSet<String> = HashSet::new();
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
            log::warn!("{}: no usable pod record; removing it", dir.display());
            let d = dir.clone();
            crate::agent::blocking::run_logged("removing a pod record", move || {
                let _ = podsetup::teardown(&d);
            })
            .await;
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
                        adopted.insert(id.clone());
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
                                finished_at: crate::timefmt::now_rfc3339(),
                            });
                            st.containers[index].ever_started = true;
                        }
                        let _ = ctx.crun.kill(&id, "SIGKILL").await;
                        let _ = ctx.crun.delete(&id).await;
                        crate::agent::blocking::run_logged(
                            "releasing an old instance",
                            move || podsetup::release_instance(&instance),
                        )
                        .await;
                        let _ = fs::remove_file(layout.exit_file(&id));
                    }
                }
            }
        }
        pods.insert(uid, st);
    }
    sweep_orphans(ctx, pods, &adopted).await;
    pending
}

fn since(now: Tick, started_at: &str) -> Tick {
    let ran = crate::timefmt::parse_rfc3339(started_at)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    now.saturating_sub(ran)
}

/// Removes crun containers, mounts and cgroups that belong to no known pod instance.
async fn sweep_orphans(
    ctx: &Arc<Context>,
    pods: &BTreeMap<String, PodState>,
    adopted: &HashSet<String>,
) {
    let known: HashSet<String> = pods
        .values()
        .flat_map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.running.as_ref().map(|r| r.id.clone()))
        })
        .chain(adopted.iter().cloned())
        .collect();
    if let Ok(list) = ctx.crun.list().await {
        for c in list.into_iter().filter(|c| !known.contains(&c.id)) {
            log::info!("removing orphaned container {} ({})", c.id, c.status);
            let _ = ctx.crun.kill(&c.id, "SIGKILL").await;
            let _ = ctx.crun.delete(&c.id).await;
        }
    }
    let pods_dir = ctx.layout.pods();
    for (target, _) in crate::fsutil::mounts() {
        let Ok(rest) = target.strip_prefix(&pods_dir) else {
            continue;
        };
        let uid = rest
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .unwrap_or_default();
        if !pods.contains_key(&uid) {
            podsetup::unmount(&target);
        }
    }
    for dir in crate::host::cgroup_dirs("/staticlet") {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name
                .strip_prefix("pod")
                .is_some_and(|uid| !pods.contains_key(uid))
            {
                super::actions::remove_cgroup(&format!("/staticlet/{name}"));
            }
        }
    }
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
