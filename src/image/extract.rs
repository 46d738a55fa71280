//! Applies image layers (tar, gzip or not) onto a rootfs directory, with OCI whiteouts.
//!
//! Layers come from outside and are hostile until proven otherwise. Every entry name is
//! checked before it touches the filesystem (no `..`, no absolute names, bounded lengths), and
//! everything is done through directory descriptors opened beneath the root
//! ([`super::beneath`]): parent directories are resolved as the container will see them
//! (symlinks clamped at the root), the entry itself is never followed, and modes, owners and
//! times are set on descriptors opened with `O_NOFOLLOW`, so a symlink can never carry a write
//! or a `chmod` onto the host. Extended headers are bounded, so a PAX record claiming
//! gigabytes is refused instead of buffered.
//!
//! Choices: GNU sparse files are expanded, as containerd (Go's archive/tar) does, and their
//! holes stay holes; PAX sparse files (`GNU.sparse.*` records) are refused by name (the tar
//! crate does not parse their maps). Character and block devices are skipped with a debug
//! line, where containerd running as root creates them: a container's `/dev` is a tmpfs the
//! runtime fills, and the device cgroup lets an unprivileged container open only the
//! standard devices, so a node from an image could serve nothing, while on the host it would
//! be a device file in the store that anyone able to reach it could open. FIFOs are created.

mod entry;
mod stream;

use super::beneath::{Beneath, MAX_DEPTH};
use entry::State;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
pub(crate) use stream::Budget;
use stream::HashingReader;
pub use stream::{decompress, open_layer};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("layer entry {entry:?}: {source}")]
    Io { entry: String, source: io::Error },
    #[error("reading layer: {0}")]
    Read(io::Error),
    #[error("layer content hashes to {actual}, but the image config says {expected}")]
    DiffId { expected: String, actual: String },
    #[error("layer entry after {after:?}: its extended headers (PAX records, GNU long names) exceed {limit} bytes; refused")]
    Headers { after: String, limit: u64 },
    /// A layer that made the agent panic before (see `sys::panics`).
    #[error("{0}")]
    Panicked(String),
}

/// Extended headers (PAX records, GNU long names) of one entry, at most.
pub const MAX_HEADERS: u64 = 1 << 20;
/// An entry name or link target, at most (PATH_MAX: nothing longer is usable in a container).
pub const MAX_NAME: usize = 4096;
/// Zeros of sparse files kept as holes in one layer, at most (each costs CPU to expand).
pub(super) const MAX_HOLES: u64 = 16 << 30;

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(super) const WHITEOUT_META: &[u8] = b".wh..wh.";
pub(super) const OPAQUE: &[u8] = b".wh..wh..opq";

/// What applying a layer cost: entries read and directory lookups made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    pub entries: u64,
    pub lookups: u64,
}

/// Checks a name from a tar entry and returns it as a relative path of normal components.
pub fn clean_entry_name(name: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// True when a relative link target, followed from `dir` (relative to the root), stays inside.
pub(super) fn stays_inside(dir: &[&OsStr], target: &Path) -> bool {
    let mut depth = dir.len() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Applies one uncompressed layer stream onto `root`. `diff_id`, when given, is checked
/// against the SHA-256 of the whole stream.
pub fn apply_layer(
    root: &Path,
    layer: impl Read,
    diff_id: Option<&str>,
) -> Result<Applied, ExtractError> {
    let mut hashing = HashingReader {
        inner: layer,
        hasher: Sha256::new(),
    };
    let mut beneath = Beneath::open(root).map_err(|source| ExtractError::Io {
        entry: root.display().to_string(),
        source,
    })?;
    let mut applied = Applied::default();
    {
        let (mut archive, budget) = Budget::archive(&mut hashing);
        let mut entries = archive.entries().map_err(ExtractError::Read)?;
        let mut state = State {
            b: &mut beneath,
            written: HashSet::new(),
            holes: 0,
            buf: vec![0u8; 64 * 1024],
        };
        let mut last = String::new();
        loop {
            let entry = match budget.next(&mut entries) {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(_)) if budget.tripped() => {
                    return Err(ExtractError::Headers {
                        after: last,
                        limit: MAX_HEADERS,
                    })
                }
                Some(Err(e)) => return Err(ExtractError::Read(e)),
            };
            applied.entries += 1;
            let mut entry = entry;
            last = state.apply(&mut entry)?;
            // What the entry did not read (a whiteout's, a directory's data) is skipped here,
            // so that the reader's next step reads headers only, within the budget.
            io::copy(&mut entry, &mut io::sink()).map_err(ExtractError::Read)?;
        }
        applied.lookups = state.b.lookups;
    }
    // Drain the tar padding so the digest covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(ExtractError::Read)?;
    if let Some(expected) = diff_id {
        let actual = format!("sha256:{}", hex(&hashing.hasher.finalize()));
        if actual != expected {
            return Err(ExtractError::DiffId {
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(applied)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
