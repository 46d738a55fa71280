//! Where everything of the crun runtime lives under the root dir and the log dir; the only
//! place these paths are built (see the layout in [`super`]).

use std::path::{Path, PathBuf};

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
        format!("{}{name}-{attempt}", Layout::pod_id_prefix(uid))
    }
    /// What the crun ids of a pod's containers start with.
    pub fn pod_id_prefix(uid: &str) -> String {
        format!("{}-", &uid[..uid.len().min(12)])
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
