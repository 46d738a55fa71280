//! The container's mounts: the kernel filesystems, /dev/shm, the pod's /etc files and its
//! volumes, each volume with its `mountPropagation` and read-only as asked (a downwardAPI
//! volume always).

use super::{oci, BundleError, BundleInput};
use oci_spec::runtime::{Mount, MountBuilder};
use std::path::PathBuf;

/// Every mount of the container, and the propagation its root filesystem needs.
pub(super) fn mounts(
    input: &BundleInput,
    privileged: bool,
    read_only: bool,
) -> Result<(Vec<Mount>, Propagation), BundleError> {
    let c = input.container;
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ];
    mounts.push(match &input.shm {
        Some(shm) => mount(
            "/dev/shm",
            "bind",
            shm.clone(),
            &["rbind", "nosuid", "nodev", "noexec"],
        )?,
        None => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
    });
    for (dest, src) in &input.etc_files {
        mounts.push(mount(
            dest,
            "bind",
            src.clone(),
            &["rbind", "rprivate", if read_only { "ro" } else { "rw" }],
        )?);
    }
    let mut rootfs_propagation = Propagation::Private;
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let Some(host) = input.volumes.get(&m.name) else {
            return Err(BundleError::NoHostPath(m.name.clone()));
        };
        let source =
            match &m.sub_path {
                Some(sp) if !sp.is_empty() => {
                    input.sub_paths.get(&i).cloned().ok_or_else(|| {
                        BundleError::SubPathNotPrepared {
                            mount: m.name.clone(),
                            sub_path: sp.clone(),
                        }
                    })?
                }
                _ => host.clone(),
            };
        // downwardAPI volumes are always mounted read-only, as the kubelet mounts them.
        let read_only = m.read_only
            || input
                .pod
                .pod
                .spec
                .volumes
                .iter()
                .any(|v| v.name == m.name && crate::manifest::downward::DownwardVolume::is(v));
        let propagation = propagation(m.mount_propagation.as_deref());
        rootfs_propagation = rootfs_propagation.max(propagation);
        mounts.push(mount(
            &m.mount_path,
            "bind",
            source,
            &[
                "rbind",
                propagation.option(),
                if read_only { "ro" } else { "rw" },
            ],
        )?);
    }
    Ok((mounts, rootfs_propagation))
}

fn mount(
    destination: &str,
    kind: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Result<Mount, BundleError> {
    oci(MountBuilder::default()
        .destination(destination)
        .typ(kind)
        .source(source.into())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build())
}

/// A volume mount's `mountPropagation`, as containerd maps it: `HostToContainer` is
/// `rslave` (mounts the host makes below the volume appear in the container),
/// `Bidirectional` is `rshared` (and the container's mounts appear on the host), `None`
/// (the default) is `rprivate`. The root filesystem takes the strongest of its volumes', so
/// that the propagation reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Propagation {
    Private,
    Slave,
    Shared,
}

pub fn propagation(field: Option<&str>) -> Propagation {
    match field {
        Some("HostToContainer") => Propagation::Slave,
        Some("Bidirectional") => Propagation::Shared,
        _ => Propagation::Private,
    }
}

impl Propagation {
    pub(super) fn option(self) -> &'static str {
        match self {
            Propagation::Private => "rprivate",
            Propagation::Slave => "rslave",
            Propagation::Shared => "rshared",
        }
    }
}
