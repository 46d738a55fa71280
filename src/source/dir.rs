//! The manifest directory (`staticPodPath`): its current reading, file by file.
//!
//! Only `*.yaml`, `*.yml` and `*.json` files are read, so editor leftovers are ignored. A file
//! is acted on when it is closed after writing or renamed into place, never while a writer has
//! it open: inotify's `MODIFY` marks a file as being written until its `CLOSE_WRITE`, and every
//! read first takes a read lease (see [`super::read`]), which the kernel refuses while any
//! process has the file open for writing. So a half-written file never replaces a running pod,
//! neither through an event nor through the periodic relist. Files are opened non-blocking and
//! checked to be regular files before reading, so a FIFO or a device cannot hang the agent.
//!
//! This type does blocking I/O and parsing; the agent runs it on a thread of its own
//! (`super::run_dir`), never on the event loop.

use super::read::{self, Hint, Loaded};
use super::trust::{self, Trust};
use super::watch::{Change, FileEvent};
use super::{Entry, Snapshot, SourceKey};
use crate::manifest::FieldError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where leases are not available, a relist leaves files touched more recently than this to
/// their close-write event.
const SETTLE: Duration = Duration::from_secs(1);

/// Why a directory entry is not read, or `None` when it is a manifest candidate.
pub fn ignore_reason(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        return Some("hidden file");
    }
    if name.ends_with(trust::SUFFIX) {
        return Some("a signature, read with its manifest only when manifestPublicKeys is set");
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    match ext {
        Some("yaml" | "yml" | "json") => None,
        _ => Some("not a .yaml, .yml or .json file"),
    }
}

/// What identifies a file's content cheaply, to skip re-parsing unchanged files on relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// The signature file's own stamp, when signatures are required.
    sig: Option<(u64, u64, i128)>,
}

fn stamp(meta: &fs::Metadata) -> Stamp {
    Stamp {
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        sig: None,
    }
}

struct FileState {
    stamp: Option<Stamp>,
    entry: Entry,
    unknown: Vec<FieldError>,
}

/// The directory's current reading, updated file by file.
pub struct DirSource {
    path: PathBuf,
    node: String,
    files: BTreeMap<PathBuf, FileState>,
    /// Files inotify saw written to in place and not closed yet.
    writing: HashSet<PathBuf>,
    /// Names already reported as ignored, so each is logged once.
    ignored: HashMap<PathBuf, &'static str>,
    /// Whether the path has been read successfully at least once.
    listed: bool,
    /// Pinned keys: each manifest must come with a verifying `<file>.minisig`.
    trust: Option<std::sync::Arc<Trust>>,
}

impl DirSource {
    pub fn new(path: PathBuf, node: String) -> Self {
        DirSource {
            path,
            node,
            files: BTreeMap::new(),
            writing: HashSet::new(),
            ignored: HashMap::new(),
            listed: false,
            trust: None,
        }
    }

    /// Requires a signature by one of `trust`'s keys beside every manifest.
    pub fn with_trust(mut self, trust: Option<std::sync::Arc<Trust>>) -> Self {
        self.trust = trust;
        self
    }

    /// A `<manifest>.minisig` name, when signatures are required: its manifest.
    fn signed_by(&self, name: &str) -> Option<PathBuf> {
        let base = name.strip_suffix(trust::SUFFIX)?;
        (self.trust.is_some() && ignore_reason(base).is_none()).then(|| self.path.join(base))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            key: SourceKey::Dir(self.path.clone()),
            entries: self.files.values().map(|f| f.entry.clone()).collect(),
            complete: self.listed,
            problem: None,
        }
    }

    /// The fields of each file that the Pod API does not have (for `validate`).
    pub fn unknown_fields(&self) -> impl Iterator<Item = (&Path, &[FieldError])> {
        self.files
            .iter()
            .map(|(p, f)| (p.as_path(), f.unknown.as_slice()))
    }

    /// Applies inotify events in order. Returns true when something changed.
    pub fn events(&mut self, events: &[FileEvent]) -> bool {
        let mut changed = false;
        for ev in events {
            let Some(path) = self.path_of(&ev.name) else {
                continue;
            };
            match ev.change {
                Change::Writing => {
                    self.writing.insert(path);
                }
                Change::Done => {
                    self.writing.remove(&path);
                    changed |= self.reload(&path, true);
                }
                Change::Touched => changed |= self.reload(&path, false),
            }
        }
        changed
    }

    /// The file an event names, or `None` when it is not a manifest candidate.
    fn path_of(&mut self, name: &std::ffi::OsStr) -> Option<PathBuf> {
        if !self.path.is_dir() {
            // A single manifest file: the watch reports only its own name.
            return (self.path.file_name()? == name).then(|| self.path.clone());
        }
        if let Some(manifest) = self.signed_by(&name.to_string_lossy()) {
            return Some(manifest);
        }
        let path = self.path.join(name);
        if let Some(reason) = ignore_reason(&name.to_string_lossy()) {
            self.note_ignored(&path, reason);
            return None;
        }
        Some(path)
    }

    fn reload(&mut self, path: &Path, closed: bool) -> bool {
        let hint = Hint {
            modified: false,
            closed,
        };
        self.refresh(path, false, hint)
    }

    /// Re-reads the whole path; unchanged files are not parsed again. Returns true on change.
    pub fn relist(&mut self, now: SystemTime) -> bool {
        let mut changed = false;
        let mut present = HashSet::new();
        if self.path.is_dir() {
            match fs::read_dir(&self.path) {
                Ok(entries) => {
                    let mut names: Vec<(PathBuf, String)> = entries
                        .flatten()
                        .map(|e| (e.path(), e.file_name().to_string_lossy().to_string()))
                        .collect();
                    names.sort();
                    for (path, name) in names {
                        if path.is_dir() || self.signed_by(&name).is_some() {
                            continue; // subdirectories are not read, as in the kubelet
                        }
                        if let Some(reason) = ignore_reason(&name) {
                            self.note_ignored(&path, reason);
                            continue;
                        }
                        let recent = fs::symlink_metadata(&path)
                            .and_then(|m| m.modified())
                            .map(|t| now.duration_since(t).unwrap_or_default() < SETTLE)
                            .unwrap_or(false);
                        present.insert(path.clone());
                        let hint = Hint {
                            modified: recent && self.listed,
                            closed: false,
                        };
                        changed |= self.refresh(&path, true, hint);
                    }
                    if !self.listed {
                        changed = true;
                    }
                    self.listed = true;
                }
                Err(e) => {
                    log::warn!(
                        "cannot list manifest directory {}: {e}",
                        self.path.display()
                    );
                    return false;
                }
            }
        } else if self.path.exists() {
            present.insert(self.path.clone());
            changed |= self.refresh(&self.path.clone(), true, Hint::default());
            changed |= !self.listed;
            self.listed = true;
        } else if !self.listed {
            log::warn!(
                "manifest path {} does not exist yet; waiting for it",
                self.path.display()
            );
            return false;
        }
        let before = self.files.len();
        self.files.retain(|p, _| present.contains(p));
        self.writing.retain(|p| present.contains(p));
        self.ignored.retain(|p, _| p.exists());
        changed || self.files.len() != before
    }

    fn note_ignored(&mut self, path: &Path, reason: &'static str) {
        if self.ignored.insert(path.to_path_buf(), reason).is_none() {
            log::info!("ignoring {}: {reason}", path.display());
        }
    }

    /// Reads `path` if its stamp changed (or always, when `use_stamp` is false). A file that
    /// inotify saw written and not closed counts as being written where leases cannot tell.
    fn refresh(&mut self, path: &Path, use_stamp: bool, mut hint: Hint) -> bool {
        let meta = fs::metadata(path);
        if let Err(e) = &meta {
            if e.kind() == std::io::ErrorKind::NotFound && fs::symlink_metadata(path).is_err() {
                self.writing.remove(path);
                return self.files.remove(path).is_some();
            }
        }
        if meta.as_ref().map(|m| m.is_dir()).unwrap_or(false) {
            return self.files.remove(path).is_some();
        }
        let sig_stamp = self.trust.as_ref().and_then(|_| {
            let m = fs::metadata(read::signature_path(path)).ok()?;
            let s = stamp(&m);
            Some((s.ino, s.size, s.mtime_ns))
        });
        let new_stamp = meta.as_ref().ok().map(|m| Stamp {
            sig: sig_stamp,
            ..stamp(m)
        });
        if use_stamp {
            if let (
                Some(s),
                Some(FileState {
                    stamp: Some(old), ..
                }),
            ) = (new_stamp, self.files.get(path))
            {
                if *old == s {
                    return false;
                }
            }
        }
        hint.modified |= self.writing.contains(path);
        let Some(Loaded { entry, unknown }) =
            read::load_file(path, &self.node, hint, self.trust.as_deref())
        else {
            return self.wait_for_writer(path);
        };
        // Read while no writer had it open (or, without leases, with no write in progress
        // that inotify knows of): a MODIFY seen earlier is settled.
        self.writing.remove(path);
        let old = self.files.get(path);
        let changed = old.is_none_or(|o| !same_outcome(&o.entry, &entry));
        if old.is_none_or(|o| changed || o.unknown != unknown) {
            for u in &unknown {
                log::warn!(
                    "{}: {}: {}; ignored, as the kubelet does (check the spelling; `staticlet validate --strict` refuses it)",
                    path.display(),
                    u.field,
                    u.message
                );
            }
        }
        self.files.insert(
            path.to_path_buf(),
            FileState {
                stamp: new_stamp,
                entry,
                unknown,
            },
        );
        changed
    }

    /// A writer has `path` open. Its earlier reading stays; a file without one is reported
    /// at the first listing, so that a pod from its last good version keeps running.
    fn wait_for_writer(&mut self, path: &Path) -> bool {
        log::debug!(
            "{} is open for writing; waiting for it to be closed",
            path.display()
        );
        if self.files.contains_key(path) || self.listed {
            return false;
        }
        self.files.insert(
            path.to_path_buf(),
            FileState {
                stamp: None,
                entry: read::being_written(path),
                unknown: Vec::new(),
            },
        );
        true
    }
}

/// Two readings of one file that would lead to the same desired state and the same report.
fn same_outcome(a: &Entry, b: &Entry) -> bool {
    match (&a.result, &b.result) {
        (Ok(x), Ok(y)) => x.uid() == y.uid(),
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}
