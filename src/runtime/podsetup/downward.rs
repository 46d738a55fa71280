//! Writes the files of `downwardAPI` (and projected `downwardAPI`) volumes when the pod's
//! sandbox is set up. Paths are resolved beneath the volume (never through a symlink out of
//! it), files are created without following symlinks and get their mode with `fchmod`; with
//! `fsGroup`, they belong to that group, as the kubelet sets their ownership.

use crate::manifest::downward::{format_map, DownwardVolume};
use crate::manifest::StaticPod;
use crate::runtime::bundle::{field_value, resource_field_value, Allocatable, ResourceError};
use crate::sys::fsutil::beneath::{self, Scope};
use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The content of one file, from the pod (`fieldRef`) or a container (`resourceFieldRef`).
fn content(
    pod: &StaticPod,
    file: &crate::manifest::downward::DownwardFile,
    node: &Allocatable,
) -> Result<String, ResourceError> {
    let m = &pod.pod.metadata;
    if let Some(fr) = &file.field_ref {
        return Ok(match fr.field_path.as_str() {
            "metadata.labels" => format_map(&m.labels),
            "metadata.annotations" => format_map(&m.annotations),
            path => field_value(pod, path, "", ""),
        });
    }
    // Validation lets no file through without one of the two.
    let Some(r) = &file.resource_field_ref else {
        return Ok(String::new());
    };
    let name = r.container_name.as_deref().unwrap_or("");
    let spec = &pod.pod.spec;
    let c = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .find(|c| c.name == name)
        .ok_or_else(|| ResourceError::NoSuchContainer(name.into()))?;
    resource_field_value(pod, c, r, node)
}

/// Writes every file of `volume` into `dir` (the volume's directory, which containers mount
/// read-only).
pub fn write(
    pod: &StaticPod,
    dir: &Path,
    volume: &DownwardVolume,
    fs_group: Option<u32>,
    node: &Allocatable,
) -> io::Result<()> {
    for (at, f) in &volume.files {
        let text = content(pod, f, node).map_err(|m| io::Error::other(format!("{at}: {m}")))?;
        let rel = Path::new(&f.path);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{at}.path: no file name")))?;
        let dirfd = beneath::mkdir_all(dir, parent, Scope::Beneath, 0o755)?;
        let cname = CString::new(name.as_bytes()).map_err(|_| io::Error::other("NUL in path"))?;
        let mut mode = f.mode.unwrap_or(volume.default_mode) as libc::mode_t & 0o777;
        if fs_group.is_some() {
            mode |= 0o440; // the kubelet's read-only volume ownership: group-readable
        }
        // SAFETY: a valid directory fd and NUL-terminated name; the new fd is owned below.
        let fd = unsafe {
            libc::openat(
                dirfd.as_raw_fd(),
                cname.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and nothing else owns it.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(text.as_bytes())?;
        if let Some(g) = fs_group {
            rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(g)))?;
        }
        rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode))?;
    }
    Ok(())
}
