//! The runtime's records: what the agent hands a monitor, what a monitor writes back, and
//! what survives an agent restart beside each pod (`pod.json`, each container's
//! `status.json`). Every record is written atomically and never empty: a record that
//! cannot be serialised is an error, not a blank file.

use crate::manifest::{Source, StaticPod};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// What the agent hands a monitor, as `monitor.json` in the instance directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub exit_file: PathBuf,
    pub memory_cgroups: Vec<PathBuf>,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
}

/// Written by the monitor once the container runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StartedRecord {
    pub monitor_pid: i32,
    pub container_pid: i32,
    pub started_at: String,
}

/// Written by the monitor when the container has ended (or could not start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    pub id: String,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
    pub started_at: Option<String>,
    pub finished_at: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Set when the container never ran: crun's own error.
    pub error: Option<String>,
}

/// How a container instance ended, as the status shows it (`lastState.terminated`); kept in
/// the container's record across agent restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Terminated {
    pub attempt: u32,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: String,
}

/// `containers/<name>/status.json`: what must survive an agent restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    pub restart_count: u32,
    pub ever_started: bool,
    pub last: Option<Terminated>,
    pub backoff_delay_secs: Option<u64>,
}

/// `pods/<uid>/pod.json`: the manifest a pod runs, with its defaults and first-seen time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub source: Source,
    pub pod: Value,
}

/// A record that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Writes `value` as JSON to `path` atomically (temp file and rename); never an empty file.
pub fn write_json<T: Serialize>(path: &Path, value: &T, pretty: bool) -> Result<(), RecordError> {
    let body = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .map_err(|source| RecordError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    crate::sys::fsutil::write_replace(path, &body).map_err(|source| RecordError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSON record; `None` when it is missing or unreadable (a record from an older
/// version, or cut short by a crash before the rename).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

impl PodRecord {
    pub fn of(pod: &StaticPod) -> PodRecord {
        PodRecord {
            source: pod.source.clone(),
            pod: pod.raw.clone(),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), RecordError> {
        write_json(&dir.join("pod.json"), self, true)
    }

    pub fn load(dir: &Path) -> Option<StaticPod> {
        let rec: PodRecord = read_json(&dir.join("pod.json"))?;
        let pod = serde_json::from_value(rec.pod.clone()).ok()?;
        Some(StaticPod {
            pod,
            raw: rec.pod,
            source: rec.source,
        })
    }
}

/// A rollout as `<rootDir>/rollouts.json` keeps it (see `desired::Rollout`).
#[derive(Debug, Serialize, Deserialize)]
struct RolloutRecord {
    /// `dir` or `url`, and the source's path or URL.
    source_kind: String,
    source: String,
    origin: PathBuf,
    previous: PodRecord,
    candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trial_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rolled_back: Option<String>,
}

/// Writes every rollout atomically (an empty list removes the file).
pub fn save_rollouts(path: &Path, rollouts: &[crate::desired::Rollout]) -> Result<(), RecordError> {
    use crate::source::SourceKey;
    if rollouts.is_empty() {
        let _ = fs::remove_file(path);
        return Ok(());
    }
    let records: Vec<RolloutRecord> = rollouts
        .iter()
        .map(|r| {
            let (source_kind, source) = match &r.key {
                SourceKey::Dir(d) => ("dir", d.display().to_string()),
                SourceKey::Url(u) => ("url", u.clone()),
            };
            RolloutRecord {
                source_kind: source_kind.into(),
                source,
                origin: r.origin.clone(),
                previous: PodRecord::of(&r.previous),
                candidate: r.candidate.clone(),
                trial_secs: r.after.map(|d| d.as_secs()),
                rolled_back: r.held.as_ref().map(|h| h.reason.clone()),
            }
        })
        .collect();
    write_json(path, &records, true)
}

/// The rollouts kept by the last agent; an unreadable file is none (logged).
pub fn load_rollouts(path: &Path) -> Vec<crate::desired::Rollout> {
    use crate::desired::{Held, Rollout};
    use crate::source::SourceKey;
    if !path.exists() {
        return Vec::new();
    }
    let Some(records) = read_json::<Vec<RolloutRecord>>(path) else {
        log::warn!(
            "{}: unreadable; rollouts in progress are forgotten",
            path.display()
        );
        return Vec::new();
    };
    records
        .into_iter()
        .filter_map(|r| {
            let key = match r.source_kind.as_str() {
                "dir" => SourceKey::Dir(r.source.into()),
                "url" => SourceKey::Url(r.source),
                _ => return None,
            };
            let pod = serde_json::from_value(r.previous.pod.clone()).ok()?;
            let previous = StaticPod {
                pod,
                raw: r.previous.pod,
                source: r.previous.source,
            };
            Some(Rollout {
                key,
                origin: r.origin,
                previous,
                held: r.rolled_back.map(|reason| Held {
                    uid: r.candidate.clone(),
                    reason,
                }),
                candidate: r.candidate,
                after: r.trial_secs.map(std::time::Duration::from_secs),
            })
        })
        .collect()
}
