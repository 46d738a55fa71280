//! One owner per root dir. Two agents on one root dir would both adopt the same containers
//! and then stop each other's after an edit; a `drain` under a live agent would take its pods
//! away and leave it crash-looping them. So whoever works on a root dir (the agent for its
//! whole life, `drain` while it runs) holds an exclusive `flock` on `<rootDir>/lock`.
//!
//! flock suits this: the kernel releases it when the holder dies, even by SIGKILL, so there
//! is no stale lock to clean up after a crash or a power cut. The descriptor is opened with
//! `O_CLOEXEC` (std always does; it is also asked for explicitly), so monitors and containers,
//! which outlive the agent on purpose, never inherit it and never keep the root dir locked.
//! The holder writes its pid and role into the file, only to name it in the refusal.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "root dir {} is in use by another staticlet{} (it holds {}): only one agent or drain may work on a root dir at a time",
        root.display(),
        holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(),
        path.display()
    )]
    Held {
        root: PathBuf,
        path: PathBuf,
        /// `pid 1234, run`, when the holder wrote it.
        holder: Option<String>,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock of `root` (which must exist) without waiting; `role` (`run`, `drain`)
    /// is recorded for the refusal message of whoever comes next.
    pub fn acquire(root: &Path, path: &Path, role: &str) -> Result<RootLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held {
                    root: root.to_path_buf(),
                    path: path.to_path_buf(),
                    holder: holder_of(&mut file),
                });
            }
            return Err(io_err(e));
        }
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{} {role}", std::process::id()))
            .map_err(io_err)?;
        Ok(RootLock { _file: file })
    }
}

/// `pid N, role` from the holder's line, if it has written one yet.
fn holder_of(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    let mut words = text.split_whitespace();
    let pid: u32 = words.next()?.parse().ok()?;
    Some(match words.next() {
        Some(role) => format!("pid {pid}, {role}"),
        None => format!("pid {pid}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let root = std::env::temp_dir().join(format!("staticlet-lock-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let path = root.join("lock");
        let first = RootLock::acquire(&root, &path, "run").unwrap();
        // flock locks belong to the open file description: a second open conflicts even in
        // the same process, as it would from another one.
        let err = RootLock::acquire(&root, &path, "drain").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}, run", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&root.display().to_string()), "{text}");
        drop(first);
        let again = RootLock::acquire(&root, &path, "drain").unwrap();
        drop(again);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
