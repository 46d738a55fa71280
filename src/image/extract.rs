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
//! Choices, as containerd makes them where it has one: GNU sparse files are expanded (their
//! holes stay holes); PAX sparse files (`GNU.sparse.*` records) are refused by name; character
//! and block devices are skipped with a debug line (a container's `/dev` is a tmpfs the
//! runtime fills, and the device cgroup lets an unprivileged container open only the standard
//! devices, so a node from an image could serve nothing, while on the host it would be a
//! device file in the store); FIFOs are created.

use super::beneath::{self, Beneath, MAX_DEPTH};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

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
}

/// Extended headers (PAX records, GNU long names) of one entry, at most.
pub const MAX_HEADERS: u64 = 1 << 20;
/// An entry name or link target, at most (PATH_MAX: nothing longer is usable in a container).
pub const MAX_NAME: usize = 4096;
/// Zeros of sparse files kept as holes in one layer, at most (each costs CPU to expand).
const MAX_HOLES: u64 = 16 << 30;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META: &[u8] = b".wh..wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

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
fn stays_inside(dir: &[&OsStr], target: &Path) -> bool {
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

/// Opens a layer blob, decompressing gzip when the magic bytes say so.
pub fn open_layer(path: &Path) -> io::Result<Box<dyn Read>> {
    decompress(io::BufReader::new(fs::File::open(path)?))
}

/// A layer stream, decompressed when it starts with gzip's magic bytes.
pub fn decompress<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    if r.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(r)))
    } else {
        Ok(Box::new(r))
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
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Counts what the tar reader consumes between two entries (headers, PAX records, long
/// names: the tar crate buffers these whole) and stops it past [`MAX_HEADERS`].
pub(crate) struct Budget {
    armed: Cell<bool>,
    used: Cell<u64>,
    tripped: Cell<bool>,
}

pub(crate) struct Bounded<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let b = &self.budget;
        if b.armed.get() && b.used.get() > MAX_HEADERS + 4096 {
            b.tripped.set(true);
            return Err(io::Error::other("extended headers too large"));
        }
        let n = self.inner.read(buf)?;
        if b.armed.get() {
            b.used.set(b.used.get() + n as u64);
        }
        Ok(n)
    }
}

impl Budget {
    /// A tar archive over `reader` whose extended headers are bounded by the budget.
    pub(crate) fn archive<R: Read>(reader: R) -> (tar::Archive<Bounded<R>>, Rc<Budget>) {
        let budget = Rc::new(Budget {
            armed: Cell::new(false),
            used: Cell::new(0),
            tripped: Cell::new(false),
        });
        let bounded = Bounded {
            inner: reader,
            budget: budget.clone(),
        };
        (tar::Archive::new(bounded), budget)
    }

    /// The next entry. The previous one must have been read to its end, so that only
    /// headers are read here.
    pub(crate) fn next<'a, R: Read>(
        &self,
        entries: &mut tar::Entries<'a, R>,
    ) -> Option<io::Result<tar::Entry<'a, R>>> {
        self.used.set(0);
        self.armed.set(true);
        let next = entries.next();
        self.armed.set(false);
        match next {
            Some(Err(_)) if self.tripped.get() => Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("extended headers (PAX records, GNU long names) of an entry exceed {MAX_HEADERS} bytes"),
            ))),
            other => other,
        }
    }

    pub(crate) fn tripped(&self) -> bool {
        self.tripped.get()
    }
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
            last = state.apply(entry)?;
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

struct State<'b> {
    b: &'b mut Beneath,
    /// What this layer wrote, so an opaque whiteout keeps it.
    written: HashSet<PathBuf>,
    holes: u64,
    buf: Vec<u8>,
}

impl State<'_> {
    /// Applies one entry and returns its name (for messages about the next one). The entry's
    /// unread data is drained, so the tar reader's next step reads only headers.
    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<String, ExtractError> {
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
            copy_data(
                &mut entry,
                &mut file,
                sparse,
                &mut self.buf,
                &mut self.holes,
            )
            .map_err(io_err)?;
        }
        set_attrs(&dir, name, owner, mode, mtime).map_err(io_err)?;
        // Whatever the entry did not read (a hard link's or a directory's data) is skipped.
        io::copy(&mut entry, &mut io::sink()).map_err(ExtractError::Read)?;
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
