//! What a restarted agent finds on the host. Containers outlive the agent: every recorded
//! pod is read back (its manifest and each container's record), each container's latest
//! instance is classified (its monitor still runs, it ended while the agent was down, or
//! its end was lost), and what nobody can use any more (older instances, pod directories
//! without a usable record) is kept aside for the sweep. Only reads: the adopted pods can be
//! published before the sweep removes anything.

use super::cli::alive;
use super::Context;
use crate::runtime::records::{read_json, PodRecord};
use crate::runtime::{
    ContainerRecord, ExitRecord, FoundContainer, FoundInstance, FoundPod, Inventory, Layout,
    Running, StartedRecord, Stray, StrayListError,
};
use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// What the inventory found to remove; the sweep removes it.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Pod directories without a usable record.
    pub orphan_dirs: Vec<PathBuf>,
    /// Instances that ended or were superseded: crun id and instance directory.
    pub dead: Vec<(String, PathBuf)>,
}

fn is_uid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads every pod record and each container's latest instance, then asks crun what it runs.
pub async fn inventory(ctx: &Context) -> (Inventory, Leftovers) {
    let mut leftovers = Leftovers::default();
    let mut pods = Vec::new();
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
        let names: Vec<String> = pod.containers().map(|c| c.name.clone()).collect();
        let containers = names
            .into_iter()
            .map(|name| container(layout, &uid, name, &mut leftovers))
            .collect();
        pods.push(FoundPod { pod, containers });
    }
    let known: HashSet<String> = pods
        .iter()
        .flat_map(|p| &p.containers)
        .filter_map(|c| match &c.latest {
            Some(FoundInstance::Running(r) | FoundInstance::Exited(r, _)) => Some(r.id.clone()),
            _ => None,
        })
        .collect();
    let strays = match ctx.crun.list().await {
        Ok(list) => Ok(list
            .into_iter()
            .filter(|c| !known.contains(&c.id))
            .map(|c| Stray {
                id: c.id,
                pid: c.pid,
                status: c.status,
            })
            .collect::<Vec<_>>()),
        Err(e) => Err(StrayListError(e.to_string())),
    };
    (
        Inventory {
            pods,
            strays,
            rollouts: Vec::new(),
        },
        leftovers,
    )
}

/// One container's record and latest instance; older instances go to the leftovers.
fn container(
    layout: &Layout,
    uid: &str,
    name: String,
    leftovers: &mut Leftovers,
) -> FoundContainer {
    let cdir = layout.container(uid, &name);
    let record: Option<ContainerRecord> = read_json(&cdir.join("status.json"));
    let mut attempts: Vec<u32> = fs::read_dir(&cdir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    attempts.sort();
    let latest = attempts.last().copied();
    let mut found = None;
    for attempt in attempts {
        let instance = layout.instance(uid, &name, attempt);
        let id = Layout::container_id(uid, &name, attempt);
        let started: Option<StartedRecord> = read_json(&instance.join("started.json"));
        let exit: Option<ExitRecord> = read_json(&layout.exit_file(&id));
        let running = started.as_ref().map(|s| Running {
            attempt,
            id: id.clone(),
            pid: s.container_pid,
            monitor_pid: s.monitor_pid,
            started_at: s.started_at.clone(),
            since: Duration::ZERO,
        });
        let is_latest = Some(attempt) == latest;
        match (running, exit) {
            (Some(r), Some(rec)) if is_latest => found = Some(FoundInstance::Exited(r, rec)),
            (Some(r), None) if is_latest && alive(r.monitor_pid) => {
                found = Some(FoundInstance::Running(r))
            }
            (started, _) => {
                if let (Some(r), true) = (started, is_latest) {
                    found = Some(FoundInstance::Lost {
                        attempt,
                        started_at: r.started_at,
                    });
                }
                leftovers.dead.push((id, instance));
            }
        }
    }
    FoundContainer {
        name,
        record,
        latest: found,
    }
}
