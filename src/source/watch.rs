//! The inotify side of the directory source: one watch, always on the right directory.
//!
//! - The manifest directory exists: it is watched itself. When it is removed or moved away
//!   (`DELETE_SELF`, `MOVE_SELF`), the watch is placed again at once.
//! - The path is a single file: its directory is watched and only events for that name count.
//! - The path does not exist (yet, or any more): the deepest existing ancestor is watched for
//!   the next path component to appear, and nothing else there is looked at. As soon as it
//!   appears the watch moves down, so the recreated directory is watched itself again, and
//!   files beside it are never read as manifests.
//!
//! In-place writes are reported as such (`MODIFY`), so the source can leave a file alone from
//! its first write until the writer closes it (`CLOSE_WRITE`).

use inotify::{EventMask as M, Inotify, WatchDescriptor, WatchMask};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What an inotify wake-up asks the source to do.
pub enum Wake {
    /// These files changed, in this order.
    Files(Vec<FileEvent>),
    /// Events were lost or the watched directory changed: list everything again.
    Relist,
}

pub struct FileEvent {
    pub name: OsString,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Written to in place (`MODIFY`): leave it alone until it is closed.
    Writing,
    /// Closed after writing, renamed into place or away, or removed.
    Done,
    /// Its mode or owner changed (`ATTRIB`); a writer may still have it open.
    Touched,
}

fn change(mask: M) -> Change {
    if mask.contains(M::MODIFY) {
        Change::Writing
    } else if mask.contains(M::ATTRIB) {
        Change::Touched
    } else {
        Change::Done
    }
}

enum Mode {
    Dir,
    File(OsString),
    /// Waiting for this name to appear in the watched ancestor.
    Waiting(OsString),
}

struct Armed {
    wd: WatchDescriptor,
    mode: Mode,
    dir: PathBuf,
}

pub struct Watcher {
    inotify: smol::Async<Inotify>,
    target: PathBuf,
    armed: Option<Armed>,
    last_error: Option<String>,
    buffer: Vec<u8>,
}

const SELF_GONE: WatchMask = WatchMask::DELETE_SELF.union(WatchMask::MOVE_SELF);
const FILES: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MODIFY)
    .union(WatchMask::CREATE)
    .union(SELF_GONE);
const APPEAR: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(SELF_GONE);

/// The parent of `p`, with `.` for a bare relative name.
fn parent(p: &Path) -> Option<PathBuf> {
    match p.parent() {
        Some(d) if d.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(d) => Some(d.to_path_buf()),
        None => None,
    }
}

impl Watcher {
    pub fn new(target: &Path) -> std::io::Result<Watcher> {
        let inotify = smol::Async::new(Inotify::init()?)?;
        let mut w = Watcher {
            inotify,
            target: target.to_path_buf(),
            armed: None,
            last_error: None,
            buffer: vec![0u8; 16 * 1024],
        };
        w.ensure_watch();
        Ok(w)
    }

    /// Places the watch if there is none (the path may have appeared since the last try).
    pub fn ensure_watch(&mut self) {
        if self.armed.is_some() {
            return;
        }
        let (dir, mode, mask) = if self.target.is_dir() {
            (self.target.clone(), Mode::Dir, FILES)
        } else if let (true, Some(d), Some(n)) = (
            self.target.exists(),
            parent(&self.target),
            self.target.file_name(),
        ) {
            (d, Mode::File(n.to_os_string()), FILES)
        } else {
            let mut child = self.target.clone();
            let mut dir = parent(&child);
            while let Some(d) = dir.clone().filter(|d| !d.is_dir()) {
                child = d.clone();
                dir = parent(&d);
            }
            let (Some(d), Some(n)) = (dir, child.file_name()) else {
                return; // nothing of the path exists, not even `/`: the relist goes on
            };
            (d, Mode::Waiting(n.to_os_string()), APPEAR)
        };
        match self.inotify.get_ref().watches().add(&dir, mask) {
            Ok(wd) => {
                if let Mode::Waiting(n) = &mode {
                    log::debug!(
                        "waiting for {} to appear in {}",
                        n.to_string_lossy(),
                        dir.display()
                    );
                }
                self.last_error = None;
                self.armed = Some(Armed { wd, mode, dir });
            }
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    log::warn!(
                        "cannot watch {}: {msg}; relying on the periodic relist",
                        dir.display()
                    );
                }
                self.last_error = Some(msg);
            }
        }
    }

    /// Drops the watch so that the next `ensure_watch` places it afresh.
    fn disarm(&mut self) {
        if let Some(a) = self.armed.take() {
            // The watch is gone already when its directory went; that error means nothing.
            let _ = self.inotify.get_ref().watches().remove(a.wd);
            log::debug!("stopped watching {}", a.dir.display());
        }
    }

    /// Waits for the next batch of events that concern the manifests.
    pub async fn next(&mut self) -> Wake {
        loop {
            self.ensure_watch();
            let buffer = &mut self.buffer;
            let result = unsafe {
                // SAFETY: read_events does not close or replace the file descriptor.
                self.inotify.read_with_mut(|i| {
                    let events = i.read_events(buffer)?;
                    Ok(events
                        .map(|e| (e.wd, e.mask, e.name.map(|n| n.to_os_string())))
                        .collect::<Vec<_>>())
                })
            }
            .await;
            let events = match result {
                Ok(events) => events,
                Err(e) => {
                    log::warn!("inotify: {e}; relisting");
                    self.disarm();
                    return Wake::Relist;
                }
            };
            let mut files = Vec::new();
            let mut relist = false;
            for (wd, mask, name) in events {
                if mask.contains(M::Q_OVERFLOW) {
                    relist = true;
                    continue;
                }
                let Some(armed) = &self.armed else { break };
                if wd != armed.wd {
                    continue; // a watch removed earlier
                }
                if mask.intersects(M::DELETE_SELF | M::MOVE_SELF | M::IGNORED) {
                    relist = true;
                    self.disarm();
                    continue;
                }
                let Some(name) = name else { continue };
                // A created file is open for writing: its close-write follows. Only a
                // directory taking the single manifest file's name matters.
                let created = mask.contains(M::CREATE);
                match &armed.mode {
                    Mode::Dir if created => {}
                    Mode::Dir => files.push(FileEvent {
                        change: change(mask),
                        name,
                    }),
                    Mode::File(n) if *n == name && mask.contains(M::ISDIR) => {
                        relist = true;
                        self.disarm();
                    }
                    Mode::File(n) if *n == name && !created => files.push(FileEvent {
                        change: change(mask),
                        name,
                    }),
                    Mode::Waiting(n) if *n == name => {
                        relist = true;
                        self.disarm();
                    }
                    Mode::File(_) | Mode::Waiting(_) => {}
                }
            }
            if relist {
                // Place the watch before the relist, so nothing that happens after the relist
                // is missed.
                self.ensure_watch();
                return Wake::Relist;
            }
            if !files.is_empty() {
                return Wake::Files(files);
            }
        }
    }
}
