//! Small filesystem helpers shared by every stage: atomic writes and mount lookups.
//!
//! Files that must survive power loss (state, caches, the image reference table) are written
//! to a temporary file in the same directory, fsynced, renamed over the target, and the
//! directory is fsynced, so a reader sees the old or the new content, never half of either.

pub mod beneath;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Creates a new, exclusive temporary file in `dir`.
pub fn temp_file(dir: &Path) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Replaces `path` with `content` atomically (temp file, rename) without forcing it to disk:
/// for files a process crash must never see half-written but that a power cut may lose
/// (bundles, exit records, the `/etc` files of a pod), which the start path must not wait for.
pub fn write_replace(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (tmp, mut f) = temp_file(dir)?;
    // Closed before the rename: closing it after would show a watcher of the directory the
    // file twice under its final name (moved in, then written).
    let result = f.write_all(content).and_then(|_| {
        drop(f);
        fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `content` to `path` atomically (temp file, fsync, rename, fsync of the directory),
/// for state that must survive a power cut (the URL cache, the image references).
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (tmp, mut f) = temp_file(dir)?;
    let result = f
        .write_all(content)
        .and_then(|_| f.sync_all())
        .and_then(|_| {
            drop(f);
            fs::rename(&tmp, path)
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes temporary files a crash may have left behind in `dir`.
pub fn remove_stale_temps(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The mount points listed in /proc/self/mounts, with their options.
pub fn mounts() -> Vec<(PathBuf, String)> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let _src = f.next()?;
            let target = unescape_mount(f.next()?);
            let _fstype = f.next()?;
            let opts = f.next()?.to_string();
            Some((PathBuf::from(target), opts))
        })
        .collect()
}

/// Mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let mut m: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| t.starts_with(dir))
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    m
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// True when something is mounted at `path`. A path that does not exist is no mount point,
/// which spares reading the mount table (a line per mount on the host) for every new pod.
pub fn is_mount_point(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok() && mounts().iter().any(|(target, _)| target == path)
}

/// True when a mounted filesystem is at `path` or uses it (an overlay lowerdir, say).
pub fn mounts_mentioning(path: &Path) -> bool {
    let p = path.to_string_lossy();
    mounts()
        .iter()
        .any(|(target, opts)| target == path || opts.contains(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use inotify::{Inotify, WatchMask};

    /// A watcher of the directory (the exit records' and the agent's own) sees a replaced
    /// file once, under its final name: the temporary file is closed before the rename.
    #[test]
    fn a_replaced_file_shows_once_under_its_final_name() {
        let dir = std::env::temp_dir().join(format!("stl-replace-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut inotify = Inotify::init().unwrap();
        inotify
            .watches()
            .add(&dir, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)
            .unwrap();
        write_replace(&dir.join("a.json"), b"{}").unwrap();
        write_atomic(&dir.join("b.json"), b"{}").unwrap();
        let mut buffer = [0u8; 4096];
        let names: Vec<String> = inotify
            .read_events(&mut buffer)
            .unwrap()
            .filter_map(|e| e.name.map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.starts_with('.'))
            .collect();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(names, ["a.json", "b.json"]);
    }
}
