//! Reading one manifest file safely: regular files only, at most 10 MB, never blocking, and
//! never while another process has it open for writing.
//!
//! The README promises that a half-written file is never read. inotify tells when a writer
//! closes a file, but a file seen at boot or by the periodic relist comes with no event. For
//! those, a read lease is the kernel's own answer: `F_SETLEASE F_RDLCK` fails with `EAGAIN`
//! while any process has the file open for writing, and while the lease is held no process can
//! open it for writing, so a read under the lease sees exactly what the last writer closed.
//! Where leases are not available (another owner without `CAP_LEASE`, a filesystem without
//! them), the caller's inotify bookkeeping decides alone.

use super::trust::{self, SignatureError, Trust};
use super::Entry;
use crate::manifest::{self, FieldError, ManifestError, Source, MAX_MANIFEST_BYTES};
use crate::sys::panics;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// What reading a file found.
pub enum Reading {
    Bytes(Vec<u8>),
    /// Another process has the file open for writing: read it when that writer closes it.
    BeingWritten,
}

/// A manifest file's entry and the fields in it that the Pod API does not have.
pub struct Loaded {
    pub entry: Entry,
    pub unknown: Vec<FieldError>,
}

/// Whether a read lease could be taken, and so whether anyone has the file open for writing.
#[derive(Debug, PartialEq, Eq)]
enum Lease {
    Held,
    Busy,
    /// Leases are not available here; nothing is known.
    Unavailable,
}

/// `fcntl` command that sets the signal sent to the owner (10 on every Linux architecture;
/// not in the libc crate).
const F_SETSIG: libc::c_int = 10;

/// Takes a read lease on `file`. The lease-break signal is set to SIGURG, whose default action
/// is to do nothing: with the default (SIGIO) a writer opening the file while the lease is
/// held would terminate the agent.
fn take_lease(file: &File) -> Lease {
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor this function borrows; no memory is passed.
    unsafe {
        if libc::fcntl(fd, F_SETSIG, libc::SIGURG) != 0 {
            return Lease::Unavailable;
        }
        if libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) == 0 {
            return Lease::Held;
        }
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Lease::Busy,
        _ => Lease::Unavailable,
    }
}

fn release_lease(file: &File) {
    // SAFETY: as in take_lease. Closing the file would release it too; this is only sooner.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
}

/// What inotify (or the clock) says about a file about to be read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hint {
    /// Written to and not closed yet (or modified very recently): it decides when the kernel
    /// cannot.
    pub modified: bool,
    /// A close-write event just named it.
    pub closed: bool,
}

/// Takes a read lease; right after a close-write event, waits a moment for it. The kernel
/// queues the event before it drops the closing writer's write access, so a lease taken at
/// once may still be refused; a refusal that lasts is another writer.
fn lease_after(file: &File, hint: Hint) -> Lease {
    let mut lease = take_lease(file);
    let mut pause = std::time::Duration::from_millis(1);
    while lease == Lease::Busy && hint.closed && pause <= std::time::Duration::from_millis(128) {
        std::thread::sleep(pause);
        pause *= 2;
        lease = take_lease(file);
    }
    lease
}

/// Why a manifest file could not be read (the path is added by the caller's error).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("Too long: {0} bytes, larger than 10 MB (the kubelet's limit)")]
    TooLong(u64),
}

/// Reads `path` unless a writer has it open.
pub fn read_file(path: &Path, hint: Hint) -> Result<Reading, ReadError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    if meta.len() > MAX_MANIFEST_BYTES as u64 {
        return Err(ReadError::TooLong(meta.len()));
    }
    let lease = lease_after(&file, hint);
    if lease == Lease::Busy || (lease == Lease::Unavailable && hint.modified) {
        return Ok(Reading::BeingWritten);
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    let read = (&file)
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut buf);
    if lease == Lease::Held {
        release_lease(&file);
    }
    read?;
    Ok(Reading::Bytes(buf))
}

/// Loads one file into an entry, as `run` and `validate` both do; `None` while a writer has
/// it open. With a trust policy, the file's `<file>.minisig` must verify first.
pub fn load_file(path: &Path, node: &str, hint: Hint, trust: Option<&Trust>) -> Option<Loaded> {
    let source = Source::File(path.to_path_buf());
    let (result, unknown) = match read_file(path, hint) {
        Ok(Reading::BeingWritten) => return None,
        Ok(Reading::Bytes(bytes)) => {
            let work = panics::manifest_work(&path.display().to_string(), &bytes);
            let _doing = panics::doing(work.clone());
            match (
                panics::refused(&work),
                trust.map(|t| verify_file(t, path, &bytes)),
            ) {
                (Some(message), _) => (Err(file_error(path, message)), Vec::new()),
                (None, Some(Err(e))) => (Err(file_error(path, e.to_string())), Vec::new()),
                _ => manifest::load_checked(&bytes, &source, node),
            }
        }
        Err(e) => (Err(file_error(path, e.to_string())), Vec::new()),
    };
    Some(Loaded {
        entry: Entry {
            origin: path.to_path_buf(),
            result,
        },
        unknown,
    })
}

/// The signature beside a manifest file: `<file>.minisig`, read as carefully as the file.
pub fn signature_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(trust::SUFFIX);
    name.into()
}

fn verify_file(trust: &Trust, path: &Path, body: &[u8]) -> Result<(), SignatureError> {
    let sig = match read_file(&signature_path(path), Hint::default()) {
        Ok(Reading::Bytes(b)) => Some(b),
        Ok(Reading::BeingWritten) => {
            return Err(SignatureError::BeingWritten(path.display().to_string()))
        }
        Err(_) if !signature_path(path).exists() => None,
        Err(source) => {
            return Err(SignatureError::Unreadable {
                what: path.display().to_string(),
                source,
            })
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let key = trust.verify(body, sig.as_deref(), &name)?;
    log::debug!("{}: signed by {}", path.display(), key.display());
    Ok(())
}

/// The entry of a file that a writer still holds open and that has no earlier reading.
pub fn being_written(path: &Path) -> Entry {
    Entry {
        origin: path.to_path_buf(),
        result: Err(file_error(
            path,
            "being written (another process has it open for writing); it is read when closed"
                .into(),
        )),
    }
}

fn file_error(path: &Path, message: String) -> ManifestError {
    ManifestError {
        origin: path.display().to_string(),
        errors: vec![FieldError::new("(file)", message)],
    }
}
