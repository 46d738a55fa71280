//! An emptyDir's mode and ownership, as the kubelet sets them up.
//!
//! The kubelet makes every emptyDir `0777` (so a container running as any user can write its
//! own volume), then, when the pod has an `fsGroup`, applies `SetVolumeOwnership`: each file
//! and directory gets the group, `rw` for owner and group (`r` only on a read-only volume),
//! directories also `x` and setgid, so new files inherit the group. With
//! `fsGroupChangePolicy: OnRootMismatch` the walk is skipped when the volume's root already
//! has the group and those bits. As in the kubelet, this runs once, when the volume is set up;
//! the volume is new and empty then, so nothing a container planted can be followed.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW: u32 = 0o660;
const EXEC: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// [`prepare_empty_dir`] with the pod's `fsGroup` and `fsGroupChangePolicy`.
pub fn prepare_for_pod(pod: &crate::manifest::StaticPod, dir: &Path) -> io::Result<()> {
    let sc = pod.pod.spec.security_context.as_ref();
    prepare_empty_dir(
        dir,
        sc.and_then(|s| s.fs_group),
        sc.and_then(|s| s.fs_group_change_policy.as_deref()),
    )
}

/// Mode `0777` on a new emptyDir, then the pod's `fsGroup` ownership.
pub fn prepare_empty_dir(
    dir: &Path,
    fs_group: Option<i64>,
    policy: Option<&str>,
) -> io::Result<()> {
    // As the kubelet's setupDir: only when the permission bits differ, which keeps setgid.
    if fs::metadata(dir)?.mode() & 0o777 != 0o777 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))?;
    }
    let Some(group) = fs_group.and_then(|g| u32::try_from(g).ok()) else {
        return Ok(());
    };
    if policy == Some("OnRootMismatch") && !needs_change(dir, group)? {
        return Ok(());
    }
    walk(dir, group)
}

/// The kubelet's `requiresPermissionChange`: the root lacks the group, the bits or setgid.
fn needs_change(dir: &Path, group: u32) -> io::Result<bool> {
    let meta = fs::metadata(dir)?;
    let wanted = RW | EXEC;
    Ok(meta.gid() != group
        || !meta.is_dir()
        || meta.mode() & wanted != wanted
        || meta.mode() & SETGID == 0)
}

fn walk(path: &Path, group: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(group))?;
    if meta.file_type().is_symlink() {
        // chmod would follow it: the target's mode is not the volume's to change.
        return Ok(());
    }
    let mut mode = meta.mode() & 0o7777 | RW;
    if meta.is_dir() {
        mode |= SETGID | EXEC;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), group)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("stl-fsgroup-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn fs_group_owns_the_tree_with_setgid_directories() {
        let d = temp("walk");
        fs::create_dir(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), b"x").unwrap();
        fs::set_permissions(d.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        prepare_empty_dir(&d, Some(2345), None).unwrap();
        let m = fs::metadata(&d).unwrap();
        assert_eq!((m.gid(), m.mode() & 0o7777), (2345, 0o2777));
        let f = fs::metadata(d.join("sub/f")).unwrap();
        assert_eq!((f.gid(), f.mode() & 0o7777), (2345, 0o660));
        let s = fs::metadata(d.join("sub")).unwrap();
        assert_eq!(s.mode() & SETGID, SETGID);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn on_root_mismatch_skips_a_volume_whose_root_is_right() {
        let d = temp("policy");
        prepare_empty_dir(&d, Some(2345), None).unwrap();
        fs::write(d.join("later"), b"x").unwrap();
        std::os::unix::fs::chown(d.join("later"), None, Some(0)).unwrap();
        prepare_empty_dir(&d, Some(2345), Some("OnRootMismatch")).unwrap();
        assert_eq!(fs::metadata(d.join("later")).unwrap().gid(), 0, "skipped");
        prepare_empty_dir(&d, Some(2345), Some("Always")).unwrap();
        assert_eq!(fs::metadata(d.join("later")).unwrap().gid(), 2345);
        // Without fsGroup the directory is still open to every user, as the kubelet makes it.
        let plain = temp("plain");
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_empty_dir(&plain, None, None).unwrap();
        assert_eq!(fs::metadata(&plain).unwrap().mode() & 0o7777, 0o777);
        fs::remove_dir_all(d).unwrap();
        fs::remove_dir_all(plain).unwrap();
    }
}
