//! What the benchmark reads from the host: /proc (CPU time, RSS/PSS), mounts, markers seen
//! through inotify, and the cleanup of everything it started, even after a failure or Ctrl-C.

use inotify::{Inotify, WatchMask};
use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub type R<T> = Result<T, String>;

// ---- interruption -----------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP set a flag that every wait checks, so the run stops at the next
/// wait and unwinds through the cleanup. Handlers (unlike an ignored or blocked signal) are
/// reset by exec, so the agent and crun start with default dispositions.
pub fn install_signal_handlers() {
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(s, on_signal as *const () as libc::sighandler_t) };
    }
}

pub fn check_interrupted() -> R<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// Sleeps in short steps so an interruption is seen quickly.
pub fn sleep(d: Duration) -> R<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Polls `f` every `step` until it gives a value, at most `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    step: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> R<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        check_interrupted()?;
        if Instant::now() > end {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(step);
    }
}

// ---- /proc ------------------------------------------------------------------------------

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a process (all its threads, dead ones included), in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, so utime
    // (field 14) and stime (15) are at indexes 11 and 12 here.
    let rest: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
}

/// Resident memory of a process from /proc/<pid>/smaps_rollup, in kB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    pub rss: u64,
    pub pss: u64,
    /// Private pages (clean + dirty): what the process alone costs.
    pub uss: u64,
}

pub fn mem_kb(pid: i32) -> Option<Mem> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Mem {
        rss: field("Rss:")?,
        pss: field("Pss:")?,
        uss: field("Private_Clean:")? + field("Private_Dirty:")?,
    })
}

pub use crate::common::host::{cmdline, monitors, mounts_below, pids as all_pids};

pub fn umount(target: &Path) {
    if let Ok(t) = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()) {
        // SAFETY: t is a valid NUL-terminated path; errors (not mounted) are ignored.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

pub fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> R<()> {
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in paths");
    let (src, tgt, fs, data) = (
        c("overlay"),
        c(&target.to_string_lossy()),
        c("overlay"),
        c(&opts),
    );
    // SAFETY: all pointers are valid NUL-terminated strings.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "mount overlay on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        ))
    }
}

// ---- markers ----------------------------------------------------------------------------

/// The directory every benchmarked container writes its marker file into (a hostPath volume
/// for staticlet's pods, a bind mount for bare crun's): a container counts as running when
/// its own process has created `/m/<token>`. Both sides are timed by the same inotify watch.
pub struct Markers {
    pub dir: PathBuf,
    inotify: Inotify,
    buffer: Vec<u8>,
    seen: HashMap<String, Instant>,
}

impl Markers {
    pub fn new(dir: &Path) -> R<Markers> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let inotify = Inotify::init().map_err(|e| format!("inotify: {e}"))?;
        inotify
            .watches()
            .add(dir, WatchMask::CREATE | WatchMask::MOVED_TO)
            .map_err(|e| format!("inotify watch {}: {e}", dir.display()))?;
        Ok(Markers {
            dir: dir.to_path_buf(),
            inotify,
            buffer: vec![0u8; 64 * 1024],
            seen: HashMap::new(),
        })
    }

    /// Reads whatever events are queued, waiting at most `timeout` for the first one; each
    /// new file is stamped with the time its event was read.
    fn pump(&mut self, timeout: Duration) -> R<()> {
        let mut pfd = libc::pollfd {
            fd: self.inotify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if n <= 0 {
            return Ok(());
        }
        let now = Instant::now();
        match self.inotify.read_events(&mut self.buffer) {
            Ok(events) => {
                for e in events {
                    if e.mask.contains(inotify::EventMask::Q_OVERFLOW) {
                        return Err("inotify queue overflow on the marker directory".into());
                    }
                    if let Some(name) = e.name {
                        self.seen
                            .entry(name.to_string_lossy().to_string())
                            .or_insert(now);
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(format!("inotify read: {e}")),
        }
    }

    /// Waits until every token's marker exists; returns when each appeared.
    pub fn wait_all(&mut self, tokens: &[String], timeout: Duration) -> R<Vec<Instant>> {
        let end = Instant::now() + timeout;
        loop {
            if tokens.iter().all(|t| self.seen.contains_key(t)) {
                return Ok(tokens.iter().map(|t| self.seen[t]).collect());
            }
            check_interrupted()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let missing: Vec<&String> = tokens
                    .iter()
                    .filter(|t| !self.seen.contains_key(*t))
                    .collect();
                return Err(format!(
                    "timed out after {timeout:?} waiting for {} container(s) to run (first: {})",
                    missing.len(),
                    missing.first().map(|s| s.as_str()).unwrap_or("")
                ));
            }
            self.pump(left.min(Duration::from_millis(100)))?;
        }
    }

    pub fn wait(&mut self, token: &str, timeout: Duration) -> R<Instant> {
        Ok(self.wait_all(&[token.to_string()], timeout)?[0])
    }
}

// ---- cleanup ----------------------------------------------------------------------------

/// The ids of the containers in a crun state root.
pub fn crun_ids(state_root: &Path) -> Vec<String> {
    let out = Command::new("crun")
        .arg("--root")
        .arg(state_root)
        .args(["list", "-q"])
        .stderr(Stdio::null())
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

pub fn crun_delete(state_root: &Path, id: &str) {
    let _ = Command::new("crun")
        .arg("--root")
        .arg(state_root)
        .args(["delete", "--force", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes a cgroup directory in every hierarchy, leaves first.
pub fn remove_cgroup_tree(relative: &str) {
    for dir in staticlet::sys::host::cgroup_dirs(relative) {
        remove_dir_tree_bottom_up(&dir);
    }
}

fn remove_dir_tree_bottom_up(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_dir_tree_bottom_up(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The bare-crun containers' cgroup parent: named after the run's directory, so that
/// `--cleanup DIR` finds it too.
pub fn cgroup_parent(base: &Path) -> String {
    format!(
        "/{}",
        base.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "staticlet-bench".into())
    )
}

/// Stops and removes everything a run started below `base`: agents and monitors (their
/// command lines name `base`), crun containers in the run's own crun roots, mounts, the
/// cgroups of the run's pods and bare containers, and the directory itself.
pub fn cleanup_all(base: &Path) {
    if !base.is_dir() {
        return;
    }
    let needle = base.to_string_lossy().to_string();
    let me = std::process::id() as i32;
    for pid in all_pids() {
        if pid != me && cmdline(pid).iter().any(|a| a.contains(&needle)) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    // The agents' root dirs are base/root and base/root-compare.
    let roots: Vec<PathBuf> = fs::read_dir(base)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("root"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    let states = roots.iter().map(|r| r.join("crun"));
    for state in states.chain([base.join("bare/state"), base.join("bare-net/state")]) {
        for id in crun_ids(&state) {
            crun_delete(&state, &id);
        }
    }
    super::network::cleanup(base);
    for m in mounts_below(base) {
        umount(&m);
    }
    for root in &roots {
        // The agent's own cgroup parent (derived from its root dir), and the shared
        // `/staticlet` that binaries before cgroupRoot used (`--compare-bin`).
        let parent = staticlet::config::default_cgroup_root(root);
        if let Ok(rd) = fs::read_dir(root.join("pods")) {
            for e in rd.flatten() {
                let uid = e.file_name().to_string_lossy().to_string();
                remove_cgroup_tree(&format!("/staticlet/pod{uid}"));
                remove_cgroup_tree(&format!("{parent}/pod{uid}"));
            }
        }
        if parent != "/staticlet" {
            remove_cgroup_tree(&parent);
        }
    }
    remove_cgroup_tree(&cgroup_parent(base));
    if let Err(e) = fs::remove_dir_all(base) {
        eprintln!("bench: cannot remove {}: {e}", base.display());
    }
}
