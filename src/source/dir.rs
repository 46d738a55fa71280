//! The manifest directory (`staticPodPath`): inotify for changes, a periodic relist as a
//! safety net, and careful reading.
//!
//! Only `*.yaml`, `*.yml` and `*.json` files are read, so editor leftovers are ignored. A file
//! is acted on when it is closed after writing or renamed into place, never on creation, so a
//! half-written file never replaces a running pod. Files are opened non-blocking and checked
//! to be regular files before reading, so a FIFO or a device cannot hang the agent.

use super::{Entry, Snapshot, SourceKey};
use crate::manifest::{self, ManifestError, Source, MAX_MANIFEST_BYTES};
use inotify::{Inotify, WatchMask};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files touched more recently than this are left to their close-write event on a relist,
/// so the relist never reads a file that is still being written.
const SETTLE: Duration = Duration::from_secs(1);

/// Why a directory entry is not read, or `None` when it is a manifest candidate.
pub fn ignore_reason(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        return Some("hidden file");
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    match ext {
        Some("yaml" | "yml" | "json") => None,
        _ => Some("not a .yaml, .yml or .json file"),
    }
}

/// Reads one manifest file safely: regular files only, at most 10 MB, never blocking.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_MANIFEST_BYTES as u64 {
        return Err(format!(
            "Too long: {} bytes, larger than 10 MB (the kubelet's limit)",
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(buf)
}

/// Loads one file into an entry, as `run` and `validate` both do.
pub fn load_file(path: &Path, node: &str) -> Entry {
    let source = Source::File(path.to_path_buf());
    let result = match read_file(path) {
        Ok(bytes) => manifest::load(&bytes, &source, node),
        Err(message) => Err(ManifestError {
            origin: path.display().to_string(),
            errors: vec![manifest::FieldError::new("(file)", message)],
        }),
    };
    Entry {
        origin: path.to_path_buf(),
        result,
    }
}

/// What identifies a file's content cheaply, to skip re-parsing unchanged files on relist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(meta: &fs::Metadata) -> Stamp {
    Stamp {
        ino: meta.ino(),
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
    }
}

/// The directory's current reading, updated file by file.
pub struct DirSource {
    path: PathBuf,
    node: String,
    files: BTreeMap<PathBuf, (Option<Stamp>, Entry)>,
    /// Names already reported as ignored, so each is logged once.
    ignored: HashMap<PathBuf, &'static str>,
    /// Whether the path has been read successfully at least once.
    listed: bool,
}

impl DirSource {
    pub fn new(path: PathBuf, node: String) -> Self {
        DirSource {
            path,
            node,
            files: BTreeMap::new(),
            ignored: HashMap::new(),
            listed: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            key: SourceKey::Dir(self.path.clone()),
            entries: self.files.values().map(|(_, e)| e.clone()).collect(),
            complete: self.listed,
        }
    }

    /// Re-reads one file named by an inotify event. Returns true when something changed.
    pub fn reload(&mut self, name: &str) -> bool {
        let single_file = !self.path.is_dir();
        if single_file && self.path.file_name().is_some_and(|f| f != name) {
            return false; // another file beside the single manifest
        }
        let path = if single_file {
            self.path.clone()
        } else {
            self.path.join(name)
        };
        if !single_file {
            if let Some(reason) = ignore_reason(name) {
                self.note_ignored(&path, reason);
                return false;
            }
        }
        self.refresh(&path, false)
    }

    /// Re-reads the whole path; unchanged files are not parsed again. Returns true on change.
    pub fn relist(&mut self, now: SystemTime) -> bool {
        let mut changed = false;
        let mut present = Vec::new();
        if self.path.is_dir() {
            match fs::read_dir(&self.path) {
                Ok(entries) => {
                    let mut names: Vec<(PathBuf, String)> = entries
                        .flatten()
                        .map(|e| (e.path(), e.file_name().to_string_lossy().to_string()))
                        .collect();
                    names.sort();
                    for (path, name) in names {
                        if path.is_dir() {
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
                        present.push(path.clone());
                        if recent && self.listed {
                            continue;
                        }
                        changed |= self.refresh(&path, true);
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
            present.push(self.path.clone());
            changed |= self.refresh(&self.path.clone(), true);
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
        self.ignored.retain(|p, _| p.exists());
        changed || self.files.len() != before
    }

    fn note_ignored(&mut self, path: &Path, reason: &'static str) {
        if self.ignored.insert(path.to_path_buf(), reason).is_none() {
            log::info!("ignoring {}: {reason}", path.display());
        }
    }

    /// Reads `path` if its stamp changed (or always, when `use_stamp` is false).
    fn refresh(&mut self, path: &Path, use_stamp: bool) -> bool {
        let meta = fs::metadata(path);
        if let Err(e) = &meta {
            if e.kind() == std::io::ErrorKind::NotFound && fs::symlink_metadata(path).is_err() {
                return self.files.remove(path).is_some();
            }
        }
        if meta.as_ref().map(|m| m.is_dir()).unwrap_or(false) {
            return self.files.remove(path).is_some();
        }
        let new_stamp = meta.as_ref().ok().map(stamp);
        if use_stamp {
            if let (Some(s), Some((Some(old), _))) = (new_stamp, self.files.get(path)) {
                if *old == s {
                    return false;
                }
            }
        }
        let entry = load_file(path, &self.node);
        let changed = match self.files.get(path) {
            Some((_, old)) => !same_outcome(old, &entry),
            None => true,
        };
        self.files.insert(path.to_path_buf(), (new_stamp, entry));
        changed
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

/// The inotify side: a watch on the directory (or on a single file's directory).
pub struct Watcher {
    inotify: smol::Async<Inotify>,
    watched: bool,
    target: PathBuf,
    buffer: Vec<u8>,
}

/// What an inotify wake-up asks the source to do.
pub enum Wake {
    /// These files changed.
    Files(Vec<String>),
    /// Events were lost or the directory itself moved: list everything again.
    Relist,
}

impl Watcher {
    pub fn new(target: &Path) -> std::io::Result<Watcher> {
        let inotify = smol::Async::new(Inotify::init()?)?;
        let mut w = Watcher {
            inotify,
            watched: false,
            target: target.to_path_buf(),
            buffer: vec![0u8; 16 * 1024],
        };
        w.ensure_watch();
        Ok(w)
    }

    /// Adds the watch once the directory exists (it may appear after start-up).
    pub fn ensure_watch(&mut self) {
        if self.watched {
            return;
        }
        let dir = if self.target.is_dir() {
            self.target.clone()
        } else {
            self.target
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let mask = WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        match self.inotify.get_ref().watches().add(&dir, mask) {
            Ok(_) => self.watched = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!(
                "cannot watch {}: {e}; relying on the periodic relist",
                dir.display()
            ),
        }
    }

    /// Waits for the next batch of events.
    pub async fn next(&mut self) -> Wake {
        let buffer = &mut self.buffer;
        let result = unsafe {
            // SAFETY: read_events does not close or replace the file descriptor.
            self.inotify.read_with_mut(|i| {
                let events = i.read_events(buffer)?;
                let mut names = Vec::new();
                let mut relist = false;
                for ev in events {
                    use inotify::EventMask as M;
                    if ev
                        .mask
                        .intersects(M::Q_OVERFLOW | M::DELETE_SELF | M::MOVE_SELF | M::IGNORED)
                    {
                        relist = true;
                    }
                    if let Some(n) = ev.name {
                        names.push(n.to_string_lossy().to_string());
                    }
                }
                Ok((names, relist))
            })
        }
        .await;
        match result {
            Ok((_, true)) => {
                self.watched = false;
                Wake::Relist
            }
            Ok((names, false)) => Wake::Files(names),
            Err(e) => {
                log::warn!("inotify: {e}; relisting");
                Wake::Relist
            }
        }
    }
}
