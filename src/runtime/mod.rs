//! The runtime stage: turns a pod's containers into crun containers and back.
//!
//! Layout under the root dir (every name in it was validated: UIDs are hex hashes, container
//! names DNS labels):
//! - `lock`: flocked by the one agent (or `drain`) that owns the root dir, see [`rootlock`];
//! - `crun/`: crun's state root, ours alone, so `crun list` shows exactly our containers;
//! - `exits/<id>.json`: exit records written by monitors, watched by the agent;
//! - `pods/<uid>/pod.json`: the manifest a pod was started from (its last good version);
//! - `pods/<uid>/{etc,shm,ns,volumes}`: what the pod's containers share;
//! - `pods/<uid>/containers/<name>/status.json`: restart count and last termination;
//! - `pods/<uid>/containers/<name>/<attempt>/`: one instance: bundle, monitor files;
//! - `network/<uid>.json`: the pod's network attachment (see [`crate::network`]).
//!
//! Pod cgroups live under the agent's own cgroup parent (`cgroupRoot`), never shared with
//! another agent, so the start-up sweep may remove whatever it does not know there.

pub mod bundle;
pub mod crun;
pub mod instance;
pub mod logwriter;
pub mod monitor;
pub mod podsetup;
pub mod rootlock;
pub mod security;
pub mod subpath;

use serde::{Deserialize, Serialize};
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

/// Where everything lives; the only place paths are built.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub logs: PathBuf,
    /// The cgroup parent of every pod cgroup, relative to each hierarchy's root
    /// (`/staticlet`); this agent's alone.
    pub cgroup_root: String,
}

impl Layout {
    pub fn new(root: &Path, logs: &Path, cgroup_root: &str) -> Layout {
        Layout {
            root: root.to_path_buf(),
            logs: logs.to_path_buf(),
            cgroup_root: cgroup_root.trim_end_matches('/').to_string(),
        }
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn crun_root(&self) -> PathBuf {
        self.root.join("crun")
    }
    pub fn exits(&self) -> PathBuf {
        self.root.join("exits")
    }
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.pods().join(uid)
    }
    pub fn container(&self, uid: &str, name: &str) -> PathBuf {
        self.pod(uid).join("containers").join(name)
    }
    pub fn instance(&self, uid: &str, name: &str, attempt: u32) -> PathBuf {
        self.container(uid, name).join(attempt.to_string())
    }
    /// crun's container id: short, unique per instance, and traceable to the pod.
    pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
        format!("{}-{name}-{attempt}", &uid[..uid.len().min(12)])
    }
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.exits().join(format!("{id}.json"))
    }
    /// `/var/log/pods/<namespace>_<pod>_<uid>`, as the kubelet names it. Valid names can add
    /// up to more than a file name may hold (255 bytes); then the pod name is cut short: the
    /// UID keeps the directory unique, and log shippers still split it on `_`.
    pub fn pod_logs(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        const NAME_MAX: usize = 255;
        let room = NAME_MAX.saturating_sub(namespace.len() + uid.len() + 2);
        let mut cut = name.len().min(room);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        self.logs
            .join(format!("{namespace}_{}_{uid}", &name[..cut]))
    }
    pub fn log_file(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        container: &str,
        attempt: u32,
    ) -> PathBuf {
        self.pod_logs(namespace, name, uid)
            .join(container)
            .join(format!("{attempt}.log"))
    }
    /// The pod's cgroup, relative to each hierarchy's root.
    pub fn pod_cgroup(&self, uid: &str) -> String {
        format!("{}/pod{uid}", self.cgroup_root)
    }
    pub fn container_cgroup(&self, uid: &str, name: &str, attempt: u32) -> String {
        format!("{}/{name}-{attempt}", self.pod_cgroup(uid))
    }
}
