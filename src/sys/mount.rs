//! Mounting and unmounting, and removing a directory only once nothing is mounted below
//! it: a bind mount left in place (a volume, a subPath) would make the removal delete what
//! it shows.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (s, t, f) = (CString::new(source)?, cstr(target)?, CString::new(fstype)?);
    let d = data.map(CString::new).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lazily unmounts `target` if something is mounted there.
pub fn unmount(target: &Path) {
    let _ = detach(target);
}

/// Lazily unmounts `target`; true when nothing is mounted there any more (detached now, or
/// not a mount point: `EINVAL`).
fn detach(target: &Path) -> bool {
    let Ok(t) = cstr(target) else {
        return false;
    };
    // SAFETY: t is a valid NUL-terminated path.
    let r = unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Vec<PathBuf> {
    let below = || crate::sys::fsutil::mounts_below(dir);
    // The mount table has a line per mount on the host, and 200 pods going at once would
    // read it hundreds of times: it is read again only when an unmount did not succeed.
    let mut all_gone = true;
    for m in &below() {
        all_gone &= detach(m);
    }
    if all_gone {
        Vec::new()
    } else {
        below()
    }
}

/// Removes `dir` once nothing is mounted below it. A bind mount left in place (a volume, a
/// subPath) would make the removal delete what it shows, so then nothing is removed.
///
/// A lazily detached mount can keep its mount point busy for a moment (a container's last
/// process still exiting, a propagated copy going away): `EBUSY` is retried with backoff for
/// a few seconds before it is reported.
pub fn remove_unmounted(dir: &Path) -> io::Result<()> {
    let mut pause = std::time::Duration::from_millis(20);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = unmount_below(dir);
        let result = match left.first() {
            Some(m) => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is still mounted; not removing {}",
                    m.display(),
                    dir.display()
                ),
            )),
            None => match fs::remove_dir_all(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        };
        match result {
            Err(e)
                if e.kind() == io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// How the mount holding a path propagates, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPropagation {
    pub mount_point: PathBuf,
    /// In a peer group (`shared:N`): mounts below it propagate to its peers.
    pub shared: bool,
    /// Receives from a master (`master:N`).
    pub slave: bool,
}

/// The propagation of the mount that holds `path` (the deepest mount point above it; the
/// last of those stacked there).
pub fn propagation_of(path: &Path) -> io::Result<MountPropagation> {
    let path = fs::canonicalize(path)?;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    propagation_in(&info, &path)
        .ok_or_else(|| io::Error::other(format!("no mount holds {}", path.display())))
}

fn propagation_in(mountinfo: &str, path: &Path) -> Option<MountPropagation> {
    let mut best: Option<MountPropagation> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        // mountinfo escapes space, tab, newline and backslash as octal.
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        if best
            .as_ref()
            .is_some_and(|b| b.mount_point.as_os_str().len() > point.as_os_str().len())
        {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for f in optional {
            shared |= f.starts_with("shared:");
            slave |= f.starts_with("master:");
        }
        best = Some(MountPropagation {
            mount_point: point,
            shared,
            slave,
        });
    }
    best
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod propagation_tests {
    use super::*;

    #[test]
    fn the_deepest_last_mount_decides() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /data rw - tmpfs tmpfs rw
31 30 0:6 / /data/in\\040side rw master:7 - tmpfs tmpfs rw
32 30 0:7 / /data/in\\040side rw shared:9 master:7 - tmpfs tmpfs rw
";
        let at = |p: &str| propagation_in(info, Path::new(p)).unwrap();
        assert_eq!((at("/etc").shared, at("/etc").slave), (true, false));
        let d = at("/data/x");
        assert_eq!(d.mount_point, Path::new("/data"));
        assert!(!d.shared && !d.slave, "private");
        let i = at("/data/in side/y");
        assert_eq!(i.mount_point, Path::new("/data/in side"));
        assert!(i.shared && i.slave, "the last stacked mount");
    }
}
