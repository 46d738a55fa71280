//! The image store's locks, shared by every process that touches it (the agent's pulls and
//! unpacks, `staticlet images ...` run by hand), so they can work at the same time.
//!
//! - `images/store.lock`, exclusive, held briefly: every change to `refs.json`, every unpack
//!   (so two pods needing one image unpack it once) and garbage collection.
//! - `images/use.lock`, shared by each import or pull while it writes blobs that no reference
//!   names yet (the role a containerd lease plays): garbage collection runs only when it can
//!   take it exclusively, so it never deletes the blobs of an import in progress. It is tried,
//!   never waited for: a collection that cannot run now runs at the end of the next operation.
//!
//! `flock` locks belong to an open file, so threads of one process exclude each other too, and
//! a lock dies with its process: a crashed import never leaves the store locked.

use super::{ImageError, ImageStore};
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Holds `images/store.lock` exclusively until dropped.
pub struct StoreLock(#[allow(dead_code)] File);

/// A shared hold on `images/use.lock`: blobs written while it is held are safe from
/// garbage collection.
pub struct Lease(#[allow(dead_code)] File);

/// `images/use.lock` held exclusively: no import or pull is writing.
pub(super) struct Idle(#[allow(dead_code)] File);

fn open_lock(path: &Path) -> Result<File, ImageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn take(file: &File, op: FlockOperation, path: &Path) -> Result<bool, ImageError> {
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => {
                return Err(ImageError::Io {
                    path: path.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
}

impl ImageStore {
    /// Waits for the store lock (changes to references, unpacks, collection).
    pub fn lock(&self) -> Result<StoreLock, ImageError> {
        self.ensure_layout()?;
        let path = self.dir.join("store.lock");
        let f = open_lock(&path)?;
        take(&f, FlockOperation::LockExclusive, &path)?;
        Ok(StoreLock(f))
    }

    /// Declares blob writes in progress, for as long as the lease is held.
    pub fn lease(&self) -> Result<Lease, ImageError> {
        self.ensure_layout()?;
        let path = self.dir.join("use.lock");
        let f = open_lock(&path)?;
        take(&f, FlockOperation::LockShared, &path)?;
        Ok(Lease(f))
    }

    /// `Some` when no import or pull (of any process) holds a lease.
    pub(super) fn idle(&self) -> Result<Option<Idle>, ImageError> {
        let path = self.dir.join("use.lock");
        let f = open_lock(&path)?;
        Ok(take(&f, FlockOperation::NonBlockingLockExclusive, &path)?.then_some(Idle(f)))
    }
}
