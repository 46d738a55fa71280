//! Opening paths inside a tree that hostile content controls: a volume a container can write
//! (for `subPath`), an image's rootfs (for `/etc/passwd`). A container that plants a symlink
//! must never make the agent open, read or mount a host file (the CVE-2017-1002101 class).
//!
//! openat2(2) with `RESOLVE_BENEATH` or `RESOLVE_IN_ROOT` does it in the kernel (Linux 5.6+);
//! older gateway kernels get a component-by-component walk on file descriptors with
//! `O_NOFOLLOW`, resolving each symlink by hand under the same rules, so the result is the
//! same either way and never depends on a path being re-resolved later.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// How symlinks that point up and out of the tree are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Escaping the tree is an error (`EXDEV`): absolute symlinks, `..` above the top. For
    /// volumes, whose symlinks the host would otherwise follow.
    Beneath,
    /// The tree is `/`: absolute symlinks and `..` resolve inside it, as a process in the
    /// container sees them. For an image's own files.
    InRoot,
}

/// Symlinks followed in one resolution, as the kernel's `MAXSYMLINKS`.
const MAX_HOPS: u32 = 40;

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<OwnedFd> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: r is a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    }
}

fn openat(dir: RawFd, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstring(name)?;
    // SAFETY: c is a valid NUL-terminated string; the result is checked.
    check(unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, 0) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: st is written by fstat before it is read.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The file type bits of an open descriptor.
pub fn file_type(fd: &OwnedFd) -> io::Result<libc::mode_t> {
    Ok(fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT)
}

fn readlink(fd: RawFd) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty path reads the link the O_PATH descriptor itself refers to.
    let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// Opens `rel` under the directory `root` with `flags` (plus `O_CLOEXEC`), resolving every
/// symlink and `..` under `scope`'s rules. The final component is never a symlink: with
/// `O_PATH` a symlink left at the end is an error rather than a descriptor of the link.
pub fn open(root: &Path, rel: &Path, scope: Scope, flags: libc::c_int) -> io::Result<OwnedFd> {
    let dir = open_root(root)?;
    match openat2(&dir, rel, scope, flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => walk(&dir, rel, scope, flags, None),
        r => r.and_then(not_a_symlink),
    }
}

/// Reads a regular file of an image (`Scope::InRoot`), at most `max` bytes: a FIFO, a device
/// or an endless file in a hostile image cannot hang or bloat the agent.
pub fn read_in_root(root: &Path, rel: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let fd = open(root, rel, Scope::InRoot, libc::O_RDONLY | libc::O_NONBLOCK)?;
    if file_type(&fd)? != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut out = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(out)
}

/// Like [`open`] for a directory, creating missing components (mode `mode`) on the way, as
/// the kubelet does for a `subPath` that does not exist yet. Always walks by hand: creating
/// and opening must happen on the same descriptors.
pub fn mkdir_all(root: &Path, rel: &Path, scope: Scope, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let dir = open_root(root)?;
    walk(
        &dir,
        rel,
        scope,
        libc::O_PATH | libc::O_DIRECTORY,
        Some(mode),
    )
}

/// The portable walk, for tests of kernels without openat2.
pub fn open_walking(
    root: &Path,
    rel: &Path,
    scope: Scope,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    walk(&open_root(root)?, rel, scope, flags, None)
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    let c = cstring(root.as_os_str())?;
    // SAFETY: c is a valid NUL-terminated string; the result is checked.
    check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

fn not_a_symlink(fd: OwnedFd) -> io::Result<OwnedFd> {
    if file_type(&fd)? == libc::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(fd)
}

fn openat2(dir: &OwnedFd, rel: &Path, scope: Scope, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cstring(rel.as_os_str())?;
    // SAFETY: open_how is plain data; every field is set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_MAGICLINKS
        | match scope {
            Scope::Beneath => libc::RESOLVE_BENEATH,
            Scope::InRoot => libc::RESOLVE_IN_ROOT,
        };
    // The kernel answers EAGAIN when a concurrent rename might have let `..` escape.
    for _ in 0..16 {
        // SAFETY: c and how outlive the call; the kernel copies `size` bytes of how.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match check(r as libc::c_int) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            other => return other,
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Splits a path into the names to visit; `None` stands for `..`.
fn names(path: &Path) -> Vec<Option<OsString>> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Some(n.to_os_string())),
            Component::ParentDir => Some(None),
            _ => None,
        })
        .collect()
}

fn walk(
    root: &OwnedFd,
    rel: &Path,
    scope: Scope,
    flags: libc::c_int,
    create: Option<libc::mode_t>,
) -> io::Result<OwnedFd> {
    // The directories from the root down to where the walk stands; the root is never popped.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut todo: Vec<Option<OsString>> = names(rel);
    todo.reverse();
    let mut hops = 0;
    let current = |stack: &Vec<OwnedFd>| stack.last().unwrap_or(root).as_raw_fd();
    while let Some(item) = todo.pop() {
        let Some(name) = item else {
            if stack.pop().is_none() && scope == Scope::Beneath {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            continue;
        };
        let last = todo.is_empty();
        let fd = match openat(current(&stack), &name, libc::O_PATH | libc::O_NOFOLLOW) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create.is_some() => {
                let c = cstring(&name)?;
                let mode = create.unwrap_or(0o755);
                // SAFETY: c is a valid NUL-terminated string.
                if unsafe { libc::mkdirat(current(&stack), c.as_ptr(), mode) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                openat(current(&stack), &name, libc::O_PATH | libc::O_NOFOLLOW)?
            }
            r => r?,
        };
        match file_type(&fd)? {
            libc::S_IFLNK => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = readlink(fd.as_raw_fd())?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    if scope == Scope::Beneath {
                        return Err(io::Error::from_raw_os_error(libc::EXDEV));
                    }
                    stack.clear();
                }
                let mut more = names(target);
                more.reverse();
                todo.extend(more);
            }
            libc::S_IFDIR if !last => stack.push(fd),
            _ if !last => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            _ => {
                if flags & libc::O_PATH != 0 && flags & libc::O_DIRECTORY == 0 {
                    return Ok(fd);
                }
                // Reopen with the caller's flags; O_NOFOLLOW makes a swap to a symlink fail.
                return not_a_symlink(openat(current(&stack), &name, flags | libc::O_NOFOLLOW)?);
            }
        }
    }
    // The path named the root itself (or resolved back to it): reopen what the walk stands on.
    let dot = OsStr::new(".");
    not_a_symlink(openat(current(&stack), dot, flags)?)
}

#[cfg(test)]
mod tests;
