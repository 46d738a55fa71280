//! One container instance's filesystem: its own writable rootfs over the image (overlayfs,
//! or a copy where overlayfs is missing), its removal, and the image user it runs as.

use super::podsetup::{mount, unmount};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Gives an instance its own writable rootfs at `<instance>/rootfs`: overlayfs over the
/// image, or a full copy where overlayfs is not available.
pub fn prepare_rootfs(image_rootfs: &Path, instance: &Path) -> io::Result<PathBuf> {
    let rootfs = instance.join("rootfs");
    let (upper, work) = (instance.join("upper"), instance.join("work"));
    for d in [&rootfs, &upper, &work] {
        fs::create_dir_all(d)?;
    }
    if crate::fsutil::mounts().iter().any(|(t, _)| *t == rootfs) {
        return Ok(rootfs);
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        image_rootfs.display(),
        upper.display(),
        work.display()
    );
    match mount("overlay", &rootfs, "overlay", 0, Some(&opts)) {
        Ok(()) => Ok(rootfs),
        Err(e) => {
            log::debug!(
                "overlayfs unavailable for {} ({e}); copying the image instead",
                rootfs.display()
            );
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", image_rootfs.display()))
                .arg(&rootfs)
                .status()?;
            if status.success() {
                Ok(rootfs)
            } else {
                Err(io::Error::other(format!(
                    "cp -a of the image failed: {status}"
                )))
            }
        }
    }
}

/// Unmounts and removes an instance's rootfs and bundle.
pub fn release_instance(instance: &Path) {
    unmount(&instance.join("rootfs"));
    let _ = fs::remove_dir_all(instance);
}

/// Resolves a user spec (`1000`, `1000:1000`, `name`, `name:group`) against the image's
/// `/etc/passwd` and `/etc/group`. Unknown names are an error; numbers always work.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, u32)> {
        let text = fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.first() != Some(&name) {
                return None;
            }
            Some((f.get(2)?.parse().ok()?, f.get(field)?.parse().ok()?))
        })
    };
    let (uid, default_gid) = match u.parse::<u32>() {
        Ok(n) => (n, lookup("etc/passwd", u, 3).map(|x| x.1).unwrap_or(0)),
        Err(_) if u.is_empty() => (0, 0),
        Err(_) => lookup("etc/passwd", u, 3)
            .ok_or_else(|| format!("user {u:?} is not in the image's /etc/passwd"))?,
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g, 2)
                .map(|x| x.0)
                .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}
