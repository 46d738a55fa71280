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
    if let Ok(t) = cstr(target) {
        // SAFETY: t is a valid path; EINVAL (not mounted) is ignored.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Vec<PathBuf> {
    let below = || -> Vec<PathBuf> {
        let mut m: Vec<PathBuf> = crate::sys::fsutil::mounts()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.starts_with(dir))
            .collect();
        m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        m
    };
    for m in below() {
        unmount(&m);
    }
    below()
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
