//! `subPath` volume mounts, made safe against the containers that write the volume.
//!
//! A container that can write into a volume (an emptyDir is enough) can plant a symlink
//! there; if the runtime later bind-mounts `<volume>/<subPath>` by path, the host resolves
//! that symlink and the next container gets a host directory, or `/`, mounted read-write
//! (CVE-2017-1002101). As the kubelet does since, the subPath is opened beneath the volume
//! without ever leaving it (see [`crate::sys::fsutil::beneath`]), the opened file descriptor is
//! bind-mounted onto a staging point inside the instance directory, and the container mounts
//! that staging point: what it gets is the inode that was checked, whatever the volume holds
//! by the time crun runs.

use crate::manifest::pod::Container;
use crate::sys::fsutil::beneath::{self, Scope};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("failed to prepare subPath {sub_path:?} for volumeMount {volume:?}: {reason}")]
pub struct SubPathError {
    pub volume: String,
    pub sub_path: String,
    pub reason: String,
}

/// Where the staging points of an instance live; [`super::instance::release_instance`]
/// unmounts everything below the instance before removing it.
fn staging_dir(instance: &Path) -> PathBuf {
    instance.join("subpaths")
}

/// Resolves every `subPath` of `c` inside its volume and pins it on a staging point; returns
/// the staging point by volumeMount index.
pub fn bind_sub_paths(
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    instance: &Path,
) -> Result<BTreeMap<usize, PathBuf>, SubPathError> {
    let mut out = BTreeMap::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let Some(sp) = m.sub_path.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        let fail = |reason: String| SubPathError {
            volume: m.name.clone(),
            sub_path: sp.to_string(),
            reason,
        };
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| fail("the volume has no host path".into()))?;
        let staging = staging_dir(instance).join(i.to_string());
        bind_one(base, Path::new(sp), &staging).map_err(|e| fail(explain(&e)))?;
        out.insert(i, staging);
    }
    Ok(out)
}

fn explain(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EXDEV) => "it leads outside the volume (through a symlink or ..)".into(),
        Some(libc::ELOOP) => "too many levels of symlinks".into(),
        _ => e.to_string(),
    }
}

fn bind_one(base: &Path, sub_path: &Path, staging: &Path) -> io::Result<()> {
    let fd = match beneath::open(base, sub_path, Scope::Beneath, libc::O_PATH) {
        // As the kubelet: a subPath that does not exist yet is created as a directory, with
        // the volume's own permissions.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let mode = fs::metadata(base)?.permissions().mode() & 0o7777;
            beneath::mkdir_all(base, sub_path, Scope::Beneath, mode)?
        }
        r => r?,
    };
    let mounted = crate::sys::fsutil::is_mount_point(staging);
    if let Some(parent) = staging.parent() {
        fs::create_dir_all(parent)?;
    }
    // The staging point must be of the same kind as what is mounted on it.
    if beneath::file_type(&fd)? == libc::S_IFDIR {
        fs::create_dir_all(staging)?;
    } else if fs::symlink_metadata(staging).is_err() {
        fs::write(staging, b"")?;
    }
    if mounted {
        crate::sys::mount::unmount(staging);
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    crate::sys::mount::mount(&source, staging, "none", libc::MS_BIND, None)
}
