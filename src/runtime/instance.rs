//! One container instance's filesystem: its own writable rootfs over the image (overlayfs,
//! or a copy where overlayfs is missing), its removal, and the image user it runs as.

use crate::sys::fsutil::beneath::read_in_root;
use crate::sys::mount::mount;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Gives an instance its own writable rootfs at `<instance>/rootfs`: overlayfs over the
/// image, or a full copy where overlayfs is not available.
pub fn prepare_rootfs(image_rootfs: &Path, instance: &Path) -> io::Result<PathBuf> {
    let rootfs = instance.join("rootfs");
    let (upper, work) = (instance.join("upper"), instance.join("work"));
    if crate::sys::fsutil::is_mount_point(&rootfs) {
        return Ok(rootfs);
    }
    for d in [&rootfs, &upper, &work] {
        fs::create_dir_all(d)?;
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

/// Unmounts and removes an instance's rootfs, subPath staging points and bundle.
pub fn release_instance(instance: &Path) {
    if let Err(e) = crate::sys::mount::remove_unmounted(instance) {
        log::warn!("{e}");
    }
}

/// A user or group the image does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} is not in the image's /etc/passwd")]
    User(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    Group(String),
}

/// Resolves a user spec (`1000`, `1000:1000`, `name`, `name:group`) against the image's
/// `/etc/passwd` and `/etc/group`. Unknown names are an error; numbers always work.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32), UserError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // The image's files are hostile: read them as the container would see them, never
    // following a symlink out to the host's own /etc/passwd.
    let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, u32)> {
        let bytes = read_in_root(rootfs, Path::new(file), 1 << 20).ok()?;
        let text = String::from_utf8_lossy(&bytes);
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
        Err(_) => lookup("etc/passwd", u, 3).ok_or_else(|| UserError::User(u.to_string()))?,
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup("etc/group", g, 2)
                .map(|x| x.0)
                .ok_or_else(|| UserError::Group(g.to_string()))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::resolve_user;
    use std::fs;

    /// An image whose /etc/passwd links to a host path must not make the agent read the
    /// host's file: the link resolves inside the image, where there is nothing.
    #[test]
    fn image_passwd_links_never_reach_the_host() {
        let base = std::env::temp_dir().join(format!("stl-user-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let rootfs = base.join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        let host = base.join("host-passwd");
        fs::write(&host, "evil:x:4242:4343::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&host, rootfs.join("etc/passwd")).unwrap();
        let e = resolve_user(&rootfs, "evil").unwrap_err();
        assert!(
            e.to_string().contains("not in the image's /etc/passwd"),
            "{e}"
        );
        assert_eq!(resolve_user(&rootfs, "4242").unwrap(), (4242, 0));
        // A link inside the image is followed as the container would.
        fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        fs::write(
            rootfs.join("etc/passwd.real"),
            "app:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd.real", rootfs.join("etc/passwd")).unwrap();
        assert_eq!(resolve_user(&rootfs, "app").unwrap(), (1000, 1001));
        fs::remove_dir_all(base).unwrap();
    }
}
