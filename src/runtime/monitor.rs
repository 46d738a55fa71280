//! The per-container monitor, in the spirit of conmon: the staticlet binary re-executed as
//! `staticlet monitor <dir>`, one per container instance.
//!
//! It makes itself a session leader and a child subreaper, and runs `crun run --detach` with
//! pipes as the container's stdout and stderr. When crun exits, the container's init
//! is re-parented to the monitor, so the monitor can wait for it and record its exit status
//! even while the agent is down, restarting or killed. It writes the CRI log (with rotation)
//! and, at the end, an exit record into the agent's exits directory, which the agent watches.
//!
//! It holds no runtime, no threads and almost no heap: poll() over two pipes and a signalfd.
//! Where it cannot be a subreaper, crun stays in the foreground as the container's parent
//! (see [`launch`]).

mod launch;

use super::logwriter::LogWriter;
use super::records::write_json;
use super::{ExitRecord, MonitorSpec, StartedRecord};
use launch::{LaunchError, Launched};
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{}: no readable monitor.json", dir.display())]
    NoSpec { dir: PathBuf },
    /// Written to the exit record and told to the agent already; nobody reads our stderr.
    #[error("{0}")]
    Reported(String),
}

/// After the container exits, how long to keep draining pipes held open by stray processes.
const DRAIN: Duration = Duration::from_secs(2);

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Blocks SIGCHLD, and only SIGCHLD, and returns a signalfd that becomes readable when a
/// child exits.
///
/// The mask is set, not added to: the agent blocks SIGTERM and SIGINT in all its threads,
/// and a signal mask survives fork and exec (Rust's `Command` no longer resets it), so a
/// monitor would otherwise ignore SIGTERM for its whole life and pass that on to crun.
fn child_signalfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain libc signal-set manipulation on a local, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn crun_error(
    spec: &MonitorSpec,
    dir: &Path,
    what: &str,
    status: std::process::ExitStatus,
) -> String {
    // crun logs its errors to the file we gave it (JSON lines or plain text).
    let log = fs::read_to_string(dir.join("crun.log")).unwrap_or_default();
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["msg"].as_str().map(String::from))
                .unwrap_or_else(|| l.to_string())
        })
        .unwrap_or_else(|| format!("exited with {status}"));
    format!("{} {what} {}: {last}", spec.runtime.display(), spec.id)
}

/// After a failed `crun run`: the error crun logged, with what was left
/// of the container removed.
fn abandon(spec: &MonitorSpec, dir: &Path, what: &str, status: std::process::ExitStatus) -> String {
    let msg = crun_error(spec, dir, what, status);
    let _ = runtime_cmd(spec, dir)
        .args(["delete", "--force", &spec.id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    msg
}

fn runtime_cmd(spec: &MonitorSpec, dir: &Path) -> Command {
    let mut c = Command::new(&spec.runtime);
    c.arg("--root")
        .arg(&spec.runtime_root)
        .arg(format!("--log=file:{}", dir.join("crun.log").display()));
    c
}

/// Writes the exit record atomically; the agent learns of it through inotify.
fn record_exit(spec: &MonitorSpec, rec: &ExitRecord) {
    let _ = write_json(&spec.exit_file, rec, false);
}

fn base_record(spec: &MonitorSpec) -> ExitRecord {
    ExitRecord {
        id: spec.id.clone(),
        pod_uid: spec.pod_uid.clone(),
        container: spec.container.clone(),
        attempt: spec.attempt,
        started_at: None,
        finished_at: crate::sys::timefmt::rfc3339(SystemTime::now()),
        exit_code: 128,
        signal: None,
        oom_killed: false,
        error: None,
    }
}

/// Tells the agent (our stdout is its pipe) how the start went, then detaches from it.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        // SAFETY: dup2 onto the standard descriptors; null stays open until both are done.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
}

pub fn main(dir: &Path) -> Result<(), MonitorError> {
    // SAFETY: setsid has no memory-safety preconditions.
    unsafe { libc::setsid() };
    let reaping = launch::become_subreaper();
    let spec: MonitorSpec = fs::read(dir.join("monitor.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| MonitorError::NoSpec {
            dir: dir.to_path_buf(),
        })?;
    let fail = |message: String| {
        let mut rec = base_record(&spec);
        rec.error = Some(message.clone());
        record_exit(&spec, &rec);
        report(&format!("failed {message}"));
        MonitorError::Reported(message)
    };
    let sigfd = child_signalfd().map_err(|e| fail(format!("signalfd: {e}")))?;
    let (out_r, out_w) = pipe().map_err(|e| fail(format!("pipe: {e}")))?;
    let (err_r, err_w) = pipe().map_err(|e| fail(format!("pipe: {e}")))?;
    let mut log =
        LogWriter::open(&spec.log_path, spec.log_max_size, spec.log_max_files).map_err(|e| {
            fail(format!(
                "cannot open the container log {}: {e}",
                spec.log_path.display()
            ))
        })?;
    let pid_file = dir.join("container.pid");
    // One `crun run` (create and start in one exec, as bare crun is used): the container's
    // process gets our pipes.
    let started_at = crate::sys::timefmt::rfc3339(SystemTime::now());
    let Launched {
        container_pid: pid,
        waited_pid,
        early_status,
    } = launch::launch(&spec, dir, &pid_file, reaping, (out_w, err_w), &sigfd).map_err(
        |e| match e {
            LaunchError::Crun(status) => fail(abandon(&spec, dir, "run", status)),
            LaunchError::Io(message) => fail(message),
        },
    )?;
    let started = StartedRecord {
        monitor_pid: std::process::id() as i32,
        container_pid: pid,
        started_at: started_at.clone(),
    };
    // Without it the agent reports the start as failed (`NoStartedRecord`).
    let _ = write_json(&dir.join("started.json"), &started, false);
    report(&format!("started {pid}"));

    let mut rec = base_record(&spec);
    rec.started_at = Some(started_at);
    let (status, finished) = pump(waited_pid, early_status, &out_r, &err_r, &sigfd, &mut log);
    log.finish();
    rec.finished_at = crate::sys::timefmt::rfc3339(finished);
    (rec.exit_code, rec.signal, rec.error) = launch::exit_of(reaping, status);
    rec.oom_killed = spec.memory_cgroups.iter().any(|d| oom_kills(d) > 0);
    record_exit(&spec, &rec);
    Ok(())
}

/// Copies both pipes into the log until `pid` (the container's init, or foreground crun)
/// exits and the pipes close (or the drain deadline passes). Returns its wait status and
/// when it ended; `early` is a status already reaped.
fn pump(
    pid: i32,
    early: Option<i32>,
    out: &OwnedFd,
    err: &OwnedFd,
    sigfd: &OwnedFd,
    log: &mut LogWriter,
) -> (Option<i32>, SystemTime) {
    let mut open = [true, true];
    let mut status: Option<i32> = early;
    let mut finished = SystemTime::now();
    let mut deadline: Option<Instant> = early.map(|_| Instant::now() + DRAIN);
    // Small: each monitor is a process of its own, and every page it dirties is its alone
    // (a busy writer just takes more reads; the writer splits lines at 16 KiB anyway).
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        if status.is_some() && !open[0] && !open[1] {
            break;
        }
        let timeout = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).as_millis() as i32,
            None => -1,
        };
        if deadline.is_some() && timeout <= 0 {
            break;
        }
        let mut fds = [
            libc::pollfd {
                fd: if open[0] { out.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open[1] { err.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if status.is_none() {
                    sigfd.as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        for (i, stream) in ["stdout", "stderr"].iter().enumerate() {
            if open[i] && fds[i].revents != 0 {
                // SAFETY: buf is valid for writes of its length.
                let r = unsafe { libc::read(fds[i].fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    log.write(stream, &buf[..r as usize]);
                } else if r == 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    open[i] = false;
                }
            }
        }
        if fds[2].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: drains one signalfd_siginfo into a local buffer of the right size.
            unsafe { libc::read(sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
            loop {
                let mut s = 0;
                // SAFETY: reaps any exited child; s is a valid out-pointer.
                let reaped = unsafe { libc::waitpid(-1, &mut s, libc::WNOHANG) };
                if reaped <= 0 {
                    break;
                }
                if reaped == pid {
                    status = Some(s);
                    finished = SystemTime::now();
                    deadline = Some(Instant::now() + DRAIN);
                }
            }
        }
    }
    (status, finished)
}

/// The `oom_kill` count of a memory cgroup (v2 `memory.events`, v1 `memory.oom_control`).
fn oom_kills(dir: &Path) -> u64 {
    ["memory.events", "memory.oom_control"]
        .iter()
        .filter_map(|f| fs::read_to_string(dir.join(f)).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0)
}
