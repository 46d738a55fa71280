//! `<rootDir>/network/<uid>.json`: a pod's attachment to its network, written atomically
//! before the ADD (state `adding`) and again with the result (state `ready`). It holds
//! everything DEL needs (the configuration ADD used, the plugin directories, the arguments,
//! the result as `prevResult`), so a removal after an agent restart, a changed `cniConfDir` or
//! a power cut releases exactly what was taken, and an agent restart never ADDs a second
//! time. It lives beside `pods/`, not in the pod's directory, so that it outlives a pod
//! directory someone removed, and it is removed only once DEL succeeded.

use super::conf::NetList;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The directory of the records, in the root dir (beside `pods/`).
pub const DIR: &str = "network";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// ADD was started and may have taken an address: DEL before anything else.
    Adding,
    /// ADD succeeded; `result` holds its answer.
    Ready,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub state: State,
    pub container_id: String,
    pub if_name: String,
    pub netns: PathBuf,
    pub cni_path: Vec<PathBuf>,
    pub cni_args: String,
    /// The configuration list ADD used (see [`NetList::to_json`]).
    pub network: Value,
    /// `{"portMappings": [...]}`: the capability arguments, the same for DEL.
    pub capability_args: Value,
    pub result: Option<Value>,
}

impl Record {
    pub fn net_list(&self) -> Option<NetList> {
        NetList::from_json(&self.network)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unreadable ({message}); the attachment it described cannot be released by staticlet: check the CNI plugins' state (host-local: /var/lib/cni/networks) by hand, then remove this file", path.display())]
    Corrupt { path: PathBuf, message: String },
}

/// The record of the pod whose directory is `pod_dir` (`<rootDir>/pods/<uid>`, as the
/// runtime's layout has it): `<rootDir>/network/<uid>.json`.
pub fn path(pod_dir: &Path) -> PathBuf {
    let uid = pod_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let root = pod_dir.parent().and_then(Path::parent).unwrap_or(pod_dir);
    root.join(DIR).join(format!("{uid}.json"))
}

/// The UIDs of every pod with a record under `root`.
pub fn recorded(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join(DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".json").map(String::from)
        })
        .filter(|uid| !uid.starts_with('.'))
        .collect()
}

/// The pod's record; `Ok(None)` when it has none.
pub fn load(pod_dir: &Path) -> Result<Option<Record>, RecordError> {
    let path = path(pod_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecordError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RecordError::Corrupt {
            path,
            message: e.to_string(),
        })
}

/// Writes the record so that it survives a power cut: the address it describes does too
/// (host-local keeps its reservations on disk).
pub fn save(pod_dir: &Path, rec: &Record) -> Result<(), RecordError> {
    let path = path(pod_dir);
    let body = serde_json::to_vec_pretty(rec).unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)
        .and_then(|_| crate::sys::fsutil::write_atomic(&path, &body))
        .map_err(|source| RecordError::Io { path, source })
}

pub fn remove(pod_dir: &Path) -> Result<(), RecordError> {
    let path = path(pod_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(RecordError::Io { path, source: e })
        }
        _ => Ok(()),
    }
}
