//! `staticlet doctor`: checks what running containers needs on this host and says what to fix.

use crate::cli::{root_dir_config, runtime_flag, DoctorCmd, Failure};
use crate::sys::host::{self, CgroupMode};
use std::path::Path;

mod network;

struct Report {
    failures: usize,
}

impl Report {
    fn ok(&self, what: &str, detail: &str) {
        println!("ok    {what}: {detail}");
    }
    fn warn(&self, what: &str, detail: &str) {
        println!("warn  {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: &str) {
        self.failures += 1;
        println!("FAIL  {what}: {detail}");
    }
}

pub fn run(cmd: &DoctorCmd) -> Result<(), Failure> {
    let mut config = root_dir_config(cmd.config.as_ref(), cmd.root_dir.as_deref())?;
    if let Some(r) = &cmd.runtime {
        config.runtime_path = runtime_flag(r)?;
    }
    crate::config::network::apply_flags(
        &mut config.network,
        &crate::config::network::Flags {
            cni_conf_dir: cmd.cni_conf_dir.as_deref(),
            cni_bin_dir: cmd.cni_bin_dir.as_deref(),
            ..Default::default()
        },
    )
    .map_err(Failure::Usage)?;
    let mut r = Report { failures: 0 };
    if host::is_root() {
        r.ok("user", "running as root");
    } else {
        r.fail(
            "user",
            "not root: staticlet creates containers, mounts and cgroups; run it as root",
        );
    }
    match host::which(&config.runtime_path) {
        Some(path) => match host::runtime_version(&path) {
            Some(v) => r.ok("runtime", &format!("{} version {v}", path.display())),
            None => r.fail("runtime", &format!("{} does not answer --version", path.display())),
        },
        None => r.fail(
            "runtime",
            &format!("{} not found on PATH: install crun (apt-get install crun; Buildroot: BR2_PACKAGE_CRUN=y) or set runtimePath", config.runtime_path.display()),
        ),
    }
    check_cgroups(&mut r);
    check_kernel(&mut r);
    if host::overlay_supported() {
        r.ok(
            "overlayfs",
            "supported: containers get a copy-on-write rootfs",
        );
    } else {
        r.warn("overlayfs", "not in /proc/filesystems (modprobe overlay, or CONFIG_OVERLAY_FS=y); staticlet falls back to copying each image's rootfs, which is slower and uses more disk");
    }
    let missing: Vec<&str> = ["net", "ipc", "uts", "pid", "mnt"]
        .into_iter()
        .filter(|ns| !Path::new("/proc/self/ns").join(ns).exists())
        .collect();
    if missing.is_empty() {
        r.ok("namespaces", "net, ipc, uts, pid and mnt are available");
    } else {
        r.fail(
            "namespaces",
            &format!(
                "missing {}: enable CONFIG_NAMESPACES and the *_NS options in the kernel",
                missing.join(", ")
            ),
        );
    }
    network::check(&mut r, &config.network);
    check_dir(&mut r, "root dir", &config.root_dir);
    check_dir(&mut r, "pod logs dir", &config.pod_logs_dir);
    match &config.static_pod_path {
        Some(p) if p.exists() => r.ok("manifests", &format!("{} exists", p.display())),
        Some(p) => r.warn(
            "manifests",
            &format!("{} does not exist yet; staticlet waits for it", p.display()),
        ),
        None => r.ok("manifests", "no staticPodPath configured"),
    }
    if r.failures > 0 {
        return Err(Failure::Failed(format!(
            "{} problem(s) to fix before running pods",
            r.failures
        )));
    }
    println!("this host can run staticlet");
    Ok(())
}

fn check_cgroups(r: &mut Report) {
    match host::cgroup_mode() {
        CgroupMode::V2 => {
            if host::buildroot_cgroupfs2() {
                r.ok("cgroups", "cgroup2 mounted by Buildroot's S30cgroupfs2 (cgroupfs-v2-mount)");
            }
            let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
            let missing: Vec<&str> = ["cpu", "memory", "pids"].into_iter().filter(|c| !controllers.split_whitespace().any(|x| x == *c)).collect();
            if missing.is_empty() {
                r.ok("cgroups", "cgroup v2 with cpu, memory and pids controllers");
            } else {
                r.warn("cgroups", &format!("cgroup v2 without the {} controller(s): limits on those resources are not enforced (kernel: CONFIG_MEMCG, CONFIG_CGROUP_SCHED, CONFIG_CGROUP_PIDS)", missing.join(", ")));
            }
        }
        CgroupMode::V1 => r.ok("cgroups", "cgroup v1: works; cgroup v2 is recommended (Buildroot: BR2_PACKAGE_CGROUPFS_V2_MOUNT=y)"),
        CgroupMode::Hybrid { stuck } if stuck.is_empty() => r.ok("cgroups", "hybrid v1/v2 with no controller on the v2 side: works"),
        CgroupMode::Hybrid { stuck } => r.fail(
            "cgroups",
            &format!(
                "hybrid v1/v2 with the {} controller(s) left on the v2 tree: crun refuses every container (\"cgroups in hybrid mode not supported\"). Fix: bind them to v1, e.g. {}; or boot with systemd.unified_cgroup_hierarchy=1 for pure v2",
                stuck.join(", "),
                stuck.iter().map(|c| format!("mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}")).collect::<Vec<_>>().join("; ")
            ),
        ),
        CgroupMode::None if host::buildroot_cgroupfs2() => r.fail("cgroups", "S30cgroupfs2 is installed but no cgroup filesystem is mounted at /sys/fs/cgroup: check that the kernel has CONFIG_CGROUPS and that S30cgroupfs2 ran before S95staticlet"),
        CgroupMode::None => r.fail("cgroups", "no cgroup filesystem at /sys/fs/cgroup: mount cgroup2 there (mount -t cgroup2 none /sys/fs/cgroup; Buildroot: BR2_PACKAGE_CGROUPFS_V2_MOUNT=y)"),
    }
}

fn check_kernel(r: &mut Report) {
    let Some(config) = host::kernel_config() else {
        r.ok(
            "kernel config",
            "/proc/config.gz not available (CONFIG_IKCONFIG_PROC); kernel options not checked",
        );
        return;
    };
    let missing = host::missing_kernel_options(&config);
    if missing.is_empty() {
        r.ok("kernel config", "every option containers need is enabled");
    }
    for (option, what) in missing {
        let detail = format!("{option} is not set ({what}); enable it (Buildroot: STATICLET_LINUX_CONFIG_FIXUPS sets it)");
        if [
            "CONFIG_VETH",
            "CONFIG_BRIDGE",
            "CONFIG_KEYS",
            "CONFIG_CPUSETS",
        ]
        .contains(&option)
        {
            r.warn("kernel config", &detail);
        } else {
            r.fail("kernel config", &detail);
        }
    }
}

/// Whether staticlet can create and write `dir`, found out without creating or writing
/// anything: doctor only looks, so running it never changes the host.
fn check_dir(r: &mut Report, what: &str, dir: &Path) {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    if !existing.is_dir() {
        return r.fail(
            what,
            &format!(
                "{}: {} is not a directory",
                dir.display(),
                existing.display()
            ),
        );
    }
    match writable(existing) {
        Ok(()) if existing == dir => r.ok(what, &format!("{} is writable", dir.display())),
        Ok(()) => r.ok(
            what,
            &format!(
                "{} does not exist yet; staticlet creates it ({} is writable)",
                dir.display(),
                existing.display()
            ),
        ),
        Err(e) => r.fail(
            what,
            &format!("{}: {}: {e}", dir.display(), existing.display()),
        ),
    }
}

/// access(2) with W_OK: also says EROFS for a read-only file system, even to root.
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
