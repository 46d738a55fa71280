//! Facts about the host that decide how containers can run: the cgroup layout, overlayfs,
//! namespaces, the runtime's version. Read by `doctor` and by the runtime.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[cfg(test)]
mod tests {
    #[test]
    fn missing_options_are_named_one_by_one() {
        let config: std::collections::BTreeMap<String, String> = super::KERNEL_OPTIONS
            .iter()
            .map(|(k, _)| (k.to_string(), "y".to_string()))
            .filter(|(k, _)| k != "CONFIG_MEMCG")
            .chain([
                ("CONFIG_OVERLAY_FS".to_string(), "m".to_string()),
                ("CONFIG_PID_NS".to_string(), "n".to_string()),
            ])
            .collect();
        let missing: Vec<&str> = super::missing_kernel_options(&config)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(missing, vec!["CONFIG_PID_NS", "CONFIG_MEMCG"]);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Pure cgroup v2 (the unified hierarchy at /sys/fs/cgroup).
    V2,
    /// Pure v1: one hierarchy per controller.
    V1,
    /// v1 hierarchies plus a v2 tree at /sys/fs/cgroup/unified. `stuck` lists controllers
    /// left on the v2 side, which makes crun refuse every container.
    Hybrid { stuck: Vec<String> },
    /// No cgroup filesystem mounted at all.
    None,
}

fn statfs_type(path: &str) -> Option<i64> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and s is a valid out-pointer.
    (unsafe { libc::statfs(c.as_ptr(), &mut s) } == 0).then_some(s.f_type as i64)
}

const CGROUP2_MAGIC: i64 = 0x6367_7270;
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
/// A namespace file (`/proc/<pid>/ns/net`) bind-mounted somewhere; procfs on kernels < 3.19.
pub const NSFS_MAGIC: i64 = 0x6e73_6673;
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The filesystem type (statfs magic) of whatever is at `path`: one system call, where
/// reading the mount table costs a line per mount on the host.
pub fn fs_type(path: &Path) -> Option<i64> {
    statfs_type(path.to_str()?)
}

pub fn cgroup_mode() -> CgroupMode {
    match statfs_type(CGROUP_ROOT) {
        Some(CGROUP2_MAGIC) => CgroupMode::V2,
        Some(TMPFS_MAGIC) => {
            let unified = Path::new(CGROUP_ROOT).join("unified");
            if statfs_type(&unified.to_string_lossy()) == Some(CGROUP2_MAGIC) {
                let stuck = fs::read_to_string(unified.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                CgroupMode::Hybrid { stuck }
            } else {
                CgroupMode::V1
            }
        }
        _ => CgroupMode::None,
    }
}

/// Every cgroup directory a pod's cgroup path maps to (one per v1 hierarchy, or one on v2).
pub fn cgroup_dirs(relative: &str) -> Vec<PathBuf> {
    let rel = relative.trim_start_matches('/');
    match cgroup_mode() {
        CgroupMode::V2 => vec![Path::new(CGROUP_ROOT).join(rel)],
        CgroupMode::None => Vec::new(),
        _ => fs::read_dir(CGROUP_ROOT)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path().join(rel))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Removes one cgroup directory and its (empty) child cgroups, as a pod's cgroup has one per
/// container instance. A cgroup that still has processes stays: rmdir refuses it.
pub fn remove_cgroup_dir(dir: &Path) {
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let _ = fs::remove_dir(c.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The directories of one controller's cgroup at `relative`: the unified one on v2, that
/// controller's hierarchy on v1 (the mode is read once).
pub fn controller_dirs(relative: &str, controller: &str) -> Vec<PathBuf> {
    let v2 = cgroup_mode() == CgroupMode::V2;
    let hierarchy = Path::new(CGROUP_ROOT).join(controller);
    cgroup_dirs(relative)
        .into_iter()
        .filter(|d| v2 || d.starts_with(&hierarchy))
        .collect()
}

pub fn overlay_supported() -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|s| s.lines().any(|l| l.ends_with("\toverlay")))
        .unwrap_or(false)
}

/// Finds `program` on PATH (or takes it as a path when it has a slash).
pub fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(program))
                .find(|c| c.is_file())
        })
        .unwrap_or(None)
}

/// `crun --version`'s first line's version, e.g. `1.8.1`.
pub fn runtime_version(runtime: &Path) -> Option<String> {
    let out = Command::new(runtime).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .map(String::from)
}

/// Kernel options containers need (the same list the Buildroot package enables).
pub const KERNEL_OPTIONS: &[(&str, &str)] = &[
    ("CONFIG_NAMESPACES", "namespaces"),
    ("CONFIG_UTS_NS", "UTS namespaces (pod hostnames)"),
    ("CONFIG_IPC_NS", "IPC namespaces"),
    ("CONFIG_PID_NS", "PID namespaces"),
    (
        "CONFIG_NET_NS",
        "network namespaces (pods without hostNetwork)",
    ),
    ("CONFIG_CGROUPS", "control groups"),
    ("CONFIG_MEMCG", "memory limits"),
    ("CONFIG_CGROUP_SCHED", "CPU limits"),
    ("CONFIG_FAIR_GROUP_SCHED", "CPU shares"),
    ("CONFIG_CFS_BANDWIDTH", "CPU limits (CFS quota)"),
    ("CONFIG_CGROUP_CPUACCT", "CPU accounting"),
    ("CONFIG_CGROUP_PIDS", "process limits (podPidsLimit)"),
    ("CONFIG_CGROUP_FREEZER", "the freezer"),
    ("CONFIG_CGROUP_DEVICE", "device rules (cgroup v1)"),
    ("CONFIG_CGROUP_BPF", "device rules (cgroup v2)"),
    ("CONFIG_BPF_SYSCALL", "device rules (cgroup v2)"),
    ("CONFIG_CPUSETS", "cpusets"),
    ("CONFIG_SECCOMP", "seccomp"),
    ("CONFIG_OVERLAY_FS", "copy-on-write container filesystems"),
    ("CONFIG_POSIX_MQUEUE", "/dev/mqueue in containers"),
    ("CONFIG_KEYS", "keyrings"),
    ("CONFIG_VETH", "veth pairs"),
    ("CONFIG_BRIDGE", "bridges"),
    ("CONFIG_IKCONFIG_PROC", "/proc/config.gz, for this check"),
];

/// The running kernel's configuration (`/proc/config.gz`), as `CONFIG_X` -> value.
pub fn kernel_config() -> Option<std::collections::BTreeMap<String, String>> {
    use std::io::Read;
    let file = fs::File::open("/proc/config.gz").ok()?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Options from [`KERNEL_OPTIONS`] that a kernel configuration does not enable.
pub fn missing_kernel_options(
    config: &std::collections::BTreeMap<String, String>,
) -> Vec<(&'static str, &'static str)> {
    KERNEL_OPTIONS
        .iter()
        .copied()
        .filter(|(k, _)| !matches!(config.get(*k).map(String::as_str), Some("y" | "m")))
        .collect()
}

/// Whether the cgroup2 mount looks like Buildroot's `cgroupfs-v2-mount` (its init script
/// mounts cgroup2 at /sys/fs/cgroup from S30cgroupfs2).
pub fn buildroot_cgroupfs2() -> bool {
    Path::new("/etc/init.d/S30cgroupfs2").exists()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
