//! Paths beneath an image root, resolved with directory descriptors as the container will
//! see them: symlinks are followed but clamped at the root (an absolute target restarts at
//! the root, `..` stops there), and the last component of a path is never followed.
//!
//! Everything the extractor does goes through a descriptor opened here with `O_NOFOLLOW`, so
//! no symlink planted by a layer can make a write, a mode or an owner land on the host. The
//! directory of the previous entry stays open (a small cache keyed by the entry's own path
//! components), so unpacking a deep tree costs one lookup per entry instead of re-resolving
//! every prefix. [`open_file`] offers the same safe resolution for readers of a rootfs (an
//! image's `/etc/passwd`, say).

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::rc::Rc;

/// Symlinks followed while resolving one path, as the kernel's own limit.
pub const MAX_LINK_HOPS: usize = 40;
/// The deepest directory an image may have; deeper trees serve no container (PATH_MAX) and
/// would make recursive removal costly.
pub const MAX_DEPTH: usize = 512;
/// Descriptors kept open for the directory of the previous entry (its deepest levels).
const KEEP_OPEN: usize = 16;

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::RDONLY);

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

struct Level {
    name: OsString,
    /// The resolved directory and its depth below the root; `None` once evicted.
    dir: Option<(Rc<OwnedFd>, usize)>,
}

/// An image root being written, with the resolved-directory cache.
pub struct Beneath {
    root: Rc<OwnedFd>,
    levels: Vec<Level>,
    /// Directory lookups done so far (one `openat` each): the cost of the unpack.
    pub lookups: u64,
}

impl Beneath {
    pub fn open(root: &Path) -> io::Result<Beneath> {
        let fd = rfs::open(root, DIR_FLAGS, Mode::empty()).map_err(errno)?;
        Ok(Beneath {
            root: Rc::new(fd),
            levels: Vec::new(),
            lookups: 0,
        })
    }

    pub fn root(&self) -> Rc<OwnedFd> {
        self.root.clone()
    }

    /// Forgets the cached directories: after anything that removed or replaced a directory
    /// or a symlink, a cached descriptor may name what is no longer there.
    pub fn forget(&mut self) {
        self.levels.clear();
    }

    /// The directory named by `parent` (normal components), resolved beneath the root. With
    /// `create`, missing directories are made (0755) and a non-directory in the way replaced,
    /// as a layer that names `a/b/c` implies `a` and `a/b`.
    pub fn dir(&mut self, parent: &[&OsStr], create: bool) -> io::Result<Rc<OwnedFd>> {
        let common = self
            .levels
            .iter()
            .zip(parent)
            .take_while(|(l, p)| l.name.as_os_str() == **p)
            .count();
        self.levels.truncate(common);
        let keep = self
            .levels
            .iter()
            .rposition(|l| l.dir.is_some())
            .map_or(0, |i| i + 1);
        self.levels.truncate(keep);
        let (mut fd, mut depth) = match self.levels.last().and_then(|l| l.dir.clone()) {
            Some(d) => d,
            None => (self.root.clone(), 0),
        };
        for name in parent.iter().skip(keep) {
            let mut pending = vec![name.to_os_string()];
            let mut hops = 0;
            (fd, depth) = self.walk(fd, depth, &mut pending, &mut hops, create)?;
            self.levels.push(Level {
                name: name.to_os_string(),
                dir: Some((fd.clone(), depth)),
            });
            if let Some(old) = self.levels.len().checked_sub(KEEP_OPEN + 1) {
                if let Some(l) = self.levels.get_mut(old) {
                    l.dir = None;
                }
            }
        }
        Ok(fd)
    }

    /// Resolves `parent` from the root without touching the cache (hard link targets).
    pub fn lookup(&mut self, parent: &[&OsStr]) -> io::Result<Rc<OwnedFd>> {
        let mut pending: Vec<OsString> = parent.iter().rev().map(|p| p.to_os_string()).collect();
        let mut hops = 0;
        Ok(self
            .walk(self.root.clone(), 0, &mut pending, &mut hops, false)?
            .0)
    }

    /// Follows `pending` (components in reverse order) from `fd` at `depth`.
    fn walk(
        &mut self,
        mut fd: Rc<OwnedFd>,
        mut depth: usize,
        pending: &mut Vec<OsString>,
        hops: &mut usize,
        create: bool,
    ) -> io::Result<(Rc<OwnedFd>, usize)> {
        while let Some(part) = pending.pop() {
            let part = part.as_os_str();
            if part.is_empty() || part == "." {
                continue;
            }
            if part == ".." {
                if depth > 0 {
                    fd = Rc::new(rfs::openat(&*fd, "..", DIR_FLAGS, Mode::empty()).map_err(errno)?);
                    depth -= 1;
                }
                continue;
            }
            self.lookups += 1;
            match rfs::openat(&*fd, part, DIR_FLAGS, Mode::empty()) {
                Ok(next) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(io::Error::other(format!(
                            "directories nested deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    fd = Rc::new(next);
                    continue;
                }
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&*fd, part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(errno(e)),
                    }
                }
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    let st = rfs::statat(&*fd, part, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)?;
                    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS {
                            return Err(errno(Errno::LOOP));
                        }
                        let target = rfs::readlinkat(&*fd, part, Vec::new()).map_err(errno)?;
                        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                        if target.is_absolute() {
                            fd = self.root.clone();
                            depth = 0;
                        }
                        for c in target.components().rev() {
                            match c {
                                Component::Normal(p) => pending.push(p.to_os_string()),
                                Component::ParentDir => pending.push("..".into()),
                                _ => {}
                            }
                        }
                        continue;
                    }
                    if !create {
                        return Err(errno(Errno::NOTDIR));
                    }
                    rfs::unlinkat(&*fd, part, AtFlags::empty()).map_err(errno)?;
                    rfs::mkdirat(&*fd, part, Mode::from_raw_mode(0o755)).map_err(errno)?;
                }
                Err(e) => return Err(errno(e)),
            }
            // Created just now: look again (without counting it twice).
            pending.push(part.to_os_string());
            self.lookups -= 1;
        }
        Ok((fd, depth))
    }
}

/// What is at `name` in `dir`, without following it; `None` when nothing is.
pub fn kind_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Removes `name` in `dir` whatever it is (a directory with its content), never following a
/// symlink. Returns what was there.
pub fn remove_any(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileType>> {
    let kind = kind_at(dir, name)?;
    match kind {
        None => {}
        Some(FileType::Directory) => {
            let sub = rfs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(errno)?;
            remove_children(&sub, &mut |_| true)?;
            rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno)?;
        }
        Some(_) => rfs::unlinkat(dir, name, AtFlags::empty()).map_err(errno)?,
    }
    Ok(kind)
}

/// Removes (recursively) the children of `dir` for which `remove` says true.
pub fn remove_children(dir: &OwnedFd, remove: &mut dyn FnMut(&OsStr) -> bool) -> io::Result<()> {
    let names: Vec<OsString> = rfs::Dir::read_from(dir)
        .map_err(errno)?
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in names {
        if remove(&name) {
            remove_any(dir, &name)?;
        }
    }
    Ok(())
}

fn reversed_components(path: &Path) -> Vec<OsString> {
    path.components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Opens the file at `path` (absolute or relative, as the container names it) beneath
/// `root` for reading: symlinks, the last one included, are followed but never leave the
/// root. For host-side readers of an image's files (`/etc/passwd` for `USER`).
pub fn open_file(root: &Path, path: &Path) -> io::Result<File> {
    let not_a_file = || io::Error::new(io::ErrorKind::InvalidInput, "not a file path");
    let mut b = Beneath::open(root)?;
    let mut pending = reversed_components(path);
    let (mut fd, mut depth, mut hops) = (b.root(), 0, 0);
    loop {
        if pending.is_empty() {
            return Err(not_a_file());
        }
        let last = pending.remove(0);
        (fd, depth) = b.walk(fd, depth, &mut pending, &mut hops, false)?;
        if last == ".." {
            return Err(not_a_file());
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        match rfs::openat(&*fd, last.as_os_str(), flags, Mode::empty()) {
            Ok(f) => return Ok(File::from(f)),
            Err(Errno::LOOP) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(errno(Errno::LOOP));
                }
                let target = rfs::readlinkat(&*fd, last.as_os_str(), Vec::new()).map_err(errno)?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    fd = b.root();
                    depth = 0;
                }
                pending = reversed_components(target);
            }
            Err(e) => return Err(errno(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    fn read(root: &Path, path: &str) -> io::Result<String> {
        let mut s = String::new();
        open_file(root, Path::new(path))?.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn open_file_follows_symlinks_but_never_leaves_the_root() {
        let base = std::env::temp_dir().join(format!("stl-beneath-{}", std::process::id()));
        let root = base.join("rootfs");
        fs_create(&root.join("etc"));
        fs_create(&root.join("usr/lib"));
        std::fs::write(base.join("host-secret"), "host").unwrap();
        std::fs::write(root.join("usr/lib/passwd"), "image").unwrap();
        symlink("../usr/lib/passwd", root.join("etc/passwd")).unwrap();
        symlink(base.join("host-secret"), root.join("etc/abs")).unwrap();
        symlink("../../../../host-secret", root.join("etc/rel")).unwrap();
        symlink("loop2", root.join("etc/loop1")).unwrap();
        symlink("loop1", root.join("etc/loop2")).unwrap();
        assert_eq!(read(&root, "/etc/passwd").unwrap(), "image");
        assert_eq!(read(&root, "etc/../etc/passwd").unwrap(), "image");
        for escaping in ["/etc/abs", "/etc/rel", "/../host-secret", "/etc/loop1"] {
            let r = read(&root, escaping);
            assert!(r.is_err(), "{escaping}: {r:?}");
        }
        std::fs::remove_dir_all(base).unwrap();
    }

    fn fs_create(p: &Path) {
        std::fs::create_dir_all(p).unwrap();
    }
}
