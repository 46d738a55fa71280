//! Applies image layers (tar, gzip or not) onto a rootfs directory, with OCI whiteouts.
//!
//! Layers come from outside and are hostile until proven otherwise. Every entry name is
//! checked before it touches the filesystem: no `..`, no absolute names, no device nodes, no
//! hard link or relative symlink that points outside the root. Paths are resolved inside the
//! root, following symlinks as the container would see them (clamped at the root), so even an
//! absolute symlink already in the tree can never make a write land outside it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: &'static str },
    #[error("layer entry {entry:?}: {source}")]
    Io { entry: String, source: io::Error },
    #[error("reading layer: {0}")]
    Read(io::Error),
    #[error("layer content hashes to {actual}, but the image config says {expected}")]
    DiffId { expected: String, actual: String },
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const MAX_LINK_HOPS: usize = 40;

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
fn stays_inside(dir: &Path, target: &Path) -> bool {
    let mut depth = dir.components().count() as i64;
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

/// Resolves `rel` (normal components only) inside `root`, following symlinks in all but the
/// last component as the container would: absolute targets restart at `root`, `..` stops there.
pub fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = rel
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let last = pending.remove(0);
    let mut current = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            current.pop();
            continue;
        }
        if part.as_os_str() == "." || part.as_os_str().is_empty() {
            continue;
        }
        let candidate = current.join(&part);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(p) => pending.push(PathBuf::from(p)),
                        Component::ParentDir => pending.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ => current = candidate,
        }
    }
    Ok(root.join(current).join(last))
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn ensure_dirs(root: &Path, rel: &Path) -> io::Result<()> {
    let mut current = PathBuf::new();
    for c in rel.components() {
        current.push(c.as_os_str());
        // Follow every component, the last one too: a parent that is a symlink is followed
        // (inside the root), as the container would see it.
        let resolved = resolve_in_root(root, &current.join("x"))?;
        let full = resolved.parent().unwrap_or(root).to_path_buf();
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                remove_any(&full)?;
                fs::DirBuilder::new().mode(0o755).create(&full)?;
            }
            // A dangling symlink's target is created inside the root, with its parents.
            Err(_) => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&full)?,
        }
    }
    Ok(())
}

/// Opens a layer blob, decompressing gzip when the magic bytes say so.
pub fn open_layer(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut f = fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = fs::File::open(path)?;
    if n == 2 && magic == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(io::BufReader::new(
            f,
        ))))
    } else {
        Ok(Box::new(io::BufReader::new(f)))
    }
}

/// Hashes what passes through, so the uncompressed layer can be checked against its diff ID.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies one uncompressed layer stream onto `root`. `diff_id`, when given, is checked
/// against the SHA-256 of the whole stream.
pub fn apply_layer(
    root: &Path,
    layer: impl Read,
    diff_id: Option<&str>,
) -> Result<(), ExtractError> {
    let mut reader = HashingReader {
        inner: layer,
        hasher: Sha256::new(),
    };
    let mut written: HashSet<PathBuf> = HashSet::new();
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries().map_err(ExtractError::Read)? {
            let mut entry = entry.map_err(ExtractError::Read)?;
            let raw_name = entry.path().map_err(ExtractError::Read)?.into_owned();
            let shown = raw_name.display().to_string();
            let refused = |reason| ExtractError::Refused {
                entry: shown.clone(),
                reason,
            };
            let io_err = |source| ExtractError::Io {
                entry: shown.clone(),
                source,
            };
            let rel = clean_entry_name(&raw_name).map_err(refused)?;
            if rel.as_os_str().is_empty() {
                continue; // the root itself ("./")
            }
            let file_name = rel.file_name().unwrap_or_default().to_os_string();
            let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let name_bytes = file_name.as_bytes();
            if name_bytes == OPAQUE.as_bytes() {
                let dir = resolve_in_root(root, &parent.join("x")).map_err(io_err)?;
                let dir = dir.parent().unwrap_or(root).to_path_buf();
                if !dir.starts_with(root) {
                    return Err(refused("opaque whiteout outside the image root"));
                }
                if let Ok(children) = fs::read_dir(&dir) {
                    for child in children.flatten() {
                        let child_rel = parent.join(child.file_name());
                        if !written.contains(&child_rel) {
                            remove_any(&child.path()).map_err(io_err)?;
                        }
                    }
                }
                continue;
            }
            if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                let target = resolve_in_root(root, &parent.join(OsStr::from_bytes(hidden)))
                    .map_err(io_err)?;
                remove_any(&target).map_err(io_err)?;
                continue;
            }
            let kind = entry.header().entry_type();
            if kind.is_block_special() || kind.is_character_special() {
                return Err(refused("device nodes are not allowed in image layers"));
            }
            ensure_dirs(root, &parent).map_err(io_err)?;
            let dest = resolve_in_root(root, &rel).map_err(io_err)?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
            let (uid, gid) = (
                entry.header().uid().unwrap_or(0),
                entry.header().gid().unwrap_or(0),
            );
            if kind.is_dir() {
                if !fs::symlink_metadata(&dest)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    remove_any(&dest).map_err(io_err)?;
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&dest)
                        .map_err(io_err)?;
                }
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(ExtractError::Read)?
                    .ok_or_else(|| refused("symlink without a target"))?;
                if !target.is_absolute() && !stays_inside(&parent, &target) {
                    return Err(refused("symlink points outside the image root"));
                }
                remove_any(&dest).map_err(io_err)?;
                symlink(&target, &dest).map_err(io_err)?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(ExtractError::Read)?
                    .ok_or_else(|| refused("hard link without a target"))?;
                let target = clean_entry_name(&target)
                    .map_err(|_| refused("hard link points outside the image root"))?;
                let source = resolve_in_root(root, &target).map_err(io_err)?;
                let meta = fs::symlink_metadata(&source).map_err(io_err)?;
                if meta.is_dir() {
                    return Err(refused("hard link to a directory"));
                }
                remove_any(&dest).map_err(io_err)?;
                fs::hard_link(&source, &dest).map_err(io_err)?;
            } else if kind.is_fifo() {
                remove_any(&dest).map_err(io_err)?;
                let c = std::ffi::CString::new(dest.as_os_str().as_bytes())
                    .map_err(|_| refused("NUL in name"))?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) } != 0 {
                    return Err(io_err(io::Error::last_os_error()));
                }
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                remove_any(&dest).map_err(io_err)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(io_err)?;
                io::copy(&mut entry, &mut f).map_err(io_err)?;
            } else {
                continue; // pax/GNU metadata entries are consumed by the tar crate
            }
            if !kind.is_symlink() {
                std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32)).ok();
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_err)?;
            } else {
                std::os::unix::fs::lchown(&dest, Some(uid as u32), Some(gid as u32)).ok();
            }
            written.insert(rel);
        }
    }
    // Drain the tar padding so the digest covers the whole stream.
    io::copy(&mut reader, &mut io::sink()).map_err(ExtractError::Read)?;
    if let Some(expected) = diff_id {
        let actual = format!("sha256:{}", hex(&reader.hasher.finalize()));
        if actual != expected {
            return Err(ExtractError::DiffId {
                expected: expected.into(),
                actual,
            });
        }
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
