//! Applying one tar entry beneath the root: whiteouts, each kind of file, and its owner,
//! mode and time set without following a symlink.

use super::{clean_entry_name, stays_inside, ExtractError, MAX_DEPTH, MAX_HOLES, MAX_NAME};
use super::{OPAQUE, WHITEOUT_META, WHITEOUT_PREFIX};
use crate::image::beneath::{self, Beneath};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(super) struct State<'b> {
    pub(super) b: &'b mut Beneath,
    /// What this layer wrote, so an opaque whiteout keeps it.
    pub(super) written: HashSet<PathBuf>,
    pub(super) holes: u64,
    pub(super) buf: Vec<u8>,
}

impl State<'_> {
    /// Applies one entry and returns its name (for messages about the next one).
    pub(super) fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<String, ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refused = |reason: &str| ExtractError::Refused {
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let io_err = |source| ExtractError::Io {
            entry: shown.clone(),
            source,
        };
        if raw.len() > MAX_NAME {
            return Err(refused(&format!("name longer than {MAX_NAME} bytes")));
        }
        if let Some(records) = entry.pax_extensions().map_err(ExtractError::Read)? {
            for r in records {
                let r = r.map_err(ExtractError::Read)?;
                if r.key_bytes().starts_with(b"GNU.sparse.") {
                    return Err(refused("PAX sparse file (GNU.sparse.* records) is not supported; rebuild the layer without tar --sparse"));
                }
            }
        }
        let kind = entry.header().entry_type();
        let rel = clean_entry_name(Path::new(OsStr::from_bytes(&raw))).map_err(refused)?;
        let comps: Vec<&OsStr> = rel.iter().collect();
        let Some((name, parent)) = comps.split_last() else {
            return Ok(shown); // the root itself ("./")
        };
        if comps.len() > MAX_DEPTH {
            return Err(refused(&format!(
                "directories nested deeper than {MAX_DEPTH} levels"
            )));
        }
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE {
            let dir = match self.b.dir(parent, false) {
                Ok(d) => d,
                Err(e) if missing(&e) => return Ok(shown),
                Err(e) => return Err(io_err(e)),
            };
            let parent_path: PathBuf = parent.iter().collect();
            let written = &self.written;
            beneath::remove_children(&dir, &mut |child| {
                !written.contains(&parent_path.join(child))
            })
            .map_err(io_err)?;
            self.b.forget();
            return Ok(shown);
        }
        if name_bytes.starts_with(WHITEOUT_META) {
            return Ok(shown); // aufs metadata (.wh..wh.plnk and the like), as containerd skips it
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(refused("whiteout that names no file"));
            }
            match self.b.dir(parent, false) {
                Ok(dir) => {
                    beneath::remove_any(&dir, OsStr::from_bytes(hidden)).map_err(io_err)?;
                }
                Err(e) if missing(&e) => {}
                Err(e) => return Err(io_err(e)),
            }
            self.b.forget();
            return Ok(shown);
        }
        if kind.is_block_special() || kind.is_character_special() {
            log::debug!("layer entry {shown:?}: device node skipped (the runtime provides /dev)");
            return Ok(shown);
        }
        let known = kind.is_dir()
            || kind.is_symlink()
            || kind.is_hard_link()
            || kind.is_fifo()
            || kind.is_file()
            || kind.is_gnu_sparse()
            || kind == tar::EntryType::Continuous;
        if !known {
            return Ok(shown); // pax global headers and other metadata
        }
        let dir = self.b.dir(parent, true).map_err(io_err)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let owner = (
            header.uid().ok().and_then(|u| u32::try_from(u).ok()),
            header.gid().ok().and_then(|g| u32::try_from(g).ok()),
        );
        let mtime = header.mtime().unwrap_or(0).min(i64::MAX as u64) as i64;
        if kind.is_dir() {
            if beneath::kind_at(&dir, name).map_err(io_err)? != Some(FileType::Directory) {
                self.replace(&dir, name).map_err(io_err)?;
                rfs::mkdirat(&*dir, *name, Mode::from_raw_mode(0o700))
                    .map_err(|e| io_err(e.into()))?;
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| refused("symlink without a target"))?
                .into_owned();
            if target.len() > MAX_NAME || target.is_empty() {
                return Err(refused("symlink target empty or too long"));
            }
            let target = Path::new(OsStr::from_bytes(&target));
            if !target.is_absolute() && !stays_inside(parent, target) {
                return Err(refused("symlink points outside the image root"));
            }
            self.replace(&dir, name).map_err(io_err)?;
            rfs::symlinkat(target, &*dir, *name).map_err(|e| io_err(e.into()))?;
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| refused("hard link without a target"))?
                .into_owned();
            let target = clean_entry_name(Path::new(OsStr::from_bytes(&target)))
                .map_err(|_| refused("hard link points outside the image root"))?;
            let tcomps: Vec<&OsStr> = target.iter().collect();
            let Some((tname, tparent)) = tcomps.split_last() else {
                return Err(refused("hard link to the image root"));
            };
            let tdir = self.b.lookup(tparent).map_err(io_err)?;
            match beneath::kind_at(&tdir, tname).map_err(io_err)? {
                None => return Err(refused("hard link to a file the layers do not have")),
                Some(FileType::Directory) => return Err(refused("hard link to a directory")),
                Some(_) => {}
            }
            if tcomps == comps {
                return Err(refused("hard link to itself"));
            }
            self.replace(&dir, name).map_err(io_err)?;
            rfs::linkat(&*tdir, *tname, &*dir, *name, AtFlags::empty())
                .map_err(|e| io_err(e.into()))?;
        } else if kind.is_fifo() {
            self.replace(&dir, name).map_err(io_err)?;
            rfs::mknodat(&*dir, *name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
                .map_err(|e| io_err(e.into()))?;
        } else {
            self.replace(&dir, name).map_err(io_err)?;
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
            let fd = rfs::openat(
                &*dir,
                *name,
                flags | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| io_err(e.into()))?;
            let mut file = fs::File::from(fd);
            let sparse = kind.is_gnu_sparse();
            copy_data(entry, &mut file, sparse, &mut self.buf, &mut self.holes).map_err(io_err)?;
        }
        set_attrs(&dir, name, owner, mode, mtime).map_err(io_err)?;
        self.written.insert(rel.clone());
        Ok(shown)
    }

    /// Clears the way for a new entry; a removed directory or symlink may be cached.
    fn replace(&mut self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        if let Some(k) = beneath::remove_any(dir, name)? {
            if k == FileType::Directory || k == FileType::Symlink {
                self.b.forget();
            }
        }
        Ok(())
    }
}

fn missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Copies an entry's data; for a sparse entry, runs of zeros become holes.
fn copy_data(
    from: &mut impl Read,
    to: &mut fs::File,
    sparse: bool,
    buf: &mut [u8],
    holes: &mut u64,
) -> io::Result<()> {
    let mut len = 0u64;
    let mut ends_in_hole = false;
    loop {
        let n = from.read(buf)?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        len += n as u64;
        if sparse && chunk.iter().all(|b| *b == 0) {
            *holes += n as u64;
            if *holes > MAX_HOLES {
                return Err(io::Error::other(format!(
                    "sparse files with more than {MAX_HOLES} bytes of holes in one layer"
                )));
            }
            to.seek(io::SeekFrom::Current(n as i64))?;
            ends_in_hole = true;
        } else {
            to.write_all(chunk)?;
            ends_in_hole = false;
        }
    }
    if ends_in_hole {
        to.set_len(len)?;
    }
    Ok(())
}

/// Sets owner, mode and time on `name` in `dir` through a descriptor opened without
/// following it. A symlink (or a hard link to one) gets its owner and time only: a mode set
/// through it would land on whatever it points to, on the host.
fn set_attrs(
    dir: &OwnedFd,
    name: &OsStr,
    (uid, gid): (Option<u32>, Option<u32>),
    mode: u32,
    mtime: i64,
) -> io::Result<()> {
    let uid = uid
        .filter(|u| *u != u32::MAX)
        .map(rustix::fs::Uid::from_raw);
    let gid = gid
        .filter(|g| *g != u32::MAX)
        .map(rustix::fs::Gid::from_raw);
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    match rfs::openat(dir, name, flags | OFlags::NOCTTY, Mode::empty()) {
        Ok(fd) => {
            // Owner first: chown clears the setuid bits that the mode may set.
            let _ = rfs::fchown(&fd, uid, gid);
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            let _ = rfs::futimens(&fd, &times);
        }
        Err(rustix::io::Errno::LOOP) => {
            let _ = rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
            let _ = rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
