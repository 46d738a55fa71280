//! How a monitor starts its container and which process it then waits for.
//!
//! Normally the monitor is a child subreaper and runs `crun run --detach`: crun exits once the
//! container runs, the container's init is re-parented to the monitor, and its wait status is
//! the container's. Where `PR_SET_CHILD_SUBREAPER` is refused (qemu-user 7.2, which CI uses to
//! run the ARM builds, answers EINVAL; so may a seccomp profile), the init would go to PID 1
//! and the monitor would never learn that it ended. Then crun runs in the foreground instead,
//! as the container's parent: it waits for the container and exits with its status (the exit
//! code, or 128 + the signal), and the monitor waits for crun (native under qemu-user, where
//! its own `PR_SET_CHILD_SUBREAPER` works; under a seccomp profile that refuses it, crun fails
//! to start the container and says why). One thing is lost that way:
//! crun removes the container's cgroup before it exits, so an OOM kill is reported as exit
//! code 137, not as `OOMKilled`.

use super::MonitorSpec;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};

/// Who ends up as the container init's parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaping {
    /// The monitor (a child subreaper): crun detaches.
    Subreaper,
    /// crun, kept in the foreground; its exit status stands for the container's.
    Foreground,
}

/// Makes the calling process a child subreaper, if the kernel (or emulator) lets it.
pub fn become_subreaper() -> Reaping {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0 {
        Reaping::Subreaper
    } else {
        Reaping::Foreground
    }
}

/// A started container: its init's pid, the process whose wait status tells how it ended,
/// and that status if the process has already been reaped.
pub struct Launched {
    pub container_pid: i32,
    pub waited_pid: i32,
    pub early_status: Option<i32>,
}

/// Why the container did not start: crun's exit status (for the message) or a system error.
pub enum LaunchError {
    Crun(ExitStatus),
    Io(String),
}

/// Runs crun for `spec` with `out`/`err` as the container's stdout and stderr.
pub fn launch(
    spec: &MonitorSpec,
    dir: &Path,
    pid_file: &Path,
    reaping: Reaping,
    (out, err): (OwnedFd, OwnedFd),
    sigfd: &OwnedFd,
) -> Result<Launched, LaunchError> {
    let mut cmd = super::runtime_cmd(spec, dir);
    cmd.arg("run");
    if reaping == Reaping::Subreaper {
        cmd.arg("--detach");
    }
    cmd.arg("--bundle")
        .arg(&spec.bundle)
        .arg("--pid-file")
        .arg(pid_file)
        .arg(&spec.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let cannot_run =
        |e: std::io::Error| LaunchError::Io(format!("cannot run {}: {e}", spec.runtime.display()));
    match reaping {
        Reaping::Subreaper => {
            let status = cmd.status().map_err(cannot_run)?;
            if !status.success() {
                return Err(LaunchError::Crun(status));
            }
            let pid = read_pid(pid_file).ok_or_else(|| no_pid_file(spec))?;
            Ok(Launched {
                container_pid: pid,
                waited_pid: pid,
                early_status: None,
            })
        }
        Reaping::Foreground => {
            let crun = cmd.spawn().map_err(cannot_run)?;
            wait_for_pid_file(spec, dir, pid_file, crun, sigfd)
        }
    }
}

fn no_pid_file(spec: &MonitorSpec) -> LaunchError {
    LaunchError::Io(format!("{} wrote no pid file", spec.runtime.display()))
}

fn read_pid(pid_file: &Path) -> Option<i32> {
    fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|pid| *pid > 0)
}

/// Foreground crun writes the pid file once the container's init exists (after checking
/// that the command can be run) and exits only when the container does, or when it could
/// not start it. Waits, on inotify and the SIGCHLD signalfd, for whichever comes first.
fn wait_for_pid_file(
    spec: &MonitorSpec,
    dir: &Path,
    pid_file: &Path,
    crun: Child,
    sigfd: &OwnedFd,
) -> Result<Launched, LaunchError> {
    let crun_pid = crun.id() as i32;
    // The watch goes first, the look second: a file written in between is not missed.
    let mut watch =
        inotify::Inotify::init().map_err(|e| LaunchError::Io(format!("inotify: {e}")))?;
    watch
        .watches()
        .add(
            dir,
            inotify::WatchMask::CLOSE_WRITE | inotify::WatchMask::MOVED_TO,
        )
        .map_err(|e| LaunchError::Io(format!("inotify on {}: {e}", dir.display())))?;
    let mut buf = [0u8; 1024];
    loop {
        if let Some(pid) = read_pid(pid_file) {
            return Ok(Launched {
                container_pid: pid,
                waited_pid: crun_pid,
                early_status: None,
            });
        }
        let mut status = 0;
        // SAFETY: waits for our own child without blocking; status is a valid out-pointer.
        if unsafe { libc::waitpid(crun_pid, &mut status, libc::WNOHANG) } == crun_pid {
            // It ended: the container ran and already exited, or it never started.
            return match read_pid(pid_file) {
                Some(pid) => Ok(Launched {
                    container_pid: pid,
                    waited_pid: crun_pid,
                    early_status: Some(status),
                }),
                None if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => {
                    Err(no_pid_file(spec))
                }
                None => Err(LaunchError::Crun(
                    std::os::unix::process::ExitStatusExt::from_raw(status),
                )),
            };
        }
        let mut fds = [
            libc::pollfd {
                fd: watch.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(LaunchError::Io(format!(
                "poll: {}",
                std::io::Error::last_os_error()
            )));
        }
        if fds[0].revents != 0 {
            // Only the wake-up matters; the loop looks at the file again.
            let _ = watch.read_events(&mut buf);
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: drains one signalfd_siginfo into a local buffer of its size.
            unsafe { libc::read(sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
        }
    }
}

/// The container's exit as (exit code, signal, error), from the wait status of the process
/// that was waited for.
pub fn exit_of(reaping: Reaping, status: Option<i32>) -> (i32, Option<i32>, Option<String>) {
    match (reaping, status) {
        (_, Some(s)) if libc::WIFEXITED(s) => (libc::WEXITSTATUS(s), None, None),
        (Reaping::Subreaper, Some(s)) if libc::WIFSIGNALED(s) => {
            (128 + libc::WTERMSIG(s), Some(libc::WTERMSIG(s)), None)
        }
        (Reaping::Foreground, Some(s)) if libc::WIFSIGNALED(s) => (
            128,
            None,
            Some(format!(
                "crun, the container's parent, was killed by signal {}; the container's exit \
                 status was lost",
                libc::WTERMSIG(s)
            )),
        ),
        _ => (
            128,
            None,
            Some("the container's exit status was lost".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> i32 {
        code << 8
    }

    #[test]
    fn foreground_crun_reports_the_containers_code() {
        assert_eq!(
            exit_of(Reaping::Foreground, Some(exited(3))),
            (3, None, None)
        );
        // crun exits with 128 + the signal for a killed container, as kubelet reports it.
        assert_eq!(
            exit_of(Reaping::Foreground, Some(exited(137))),
            (137, None, None)
        );
        let (code, signal, error) = exit_of(Reaping::Foreground, Some(9));
        assert_eq!((code, signal), (128, None));
        assert!(error.unwrap_or_default().contains("signal 9"));
    }

    #[test]
    fn a_reaped_init_gives_its_own_status() {
        assert_eq!(
            exit_of(Reaping::Subreaper, Some(exited(0))),
            (0, None, None)
        );
        assert_eq!(exit_of(Reaping::Subreaper, Some(15)), (143, Some(15), None));
        assert!(exit_of(Reaping::Subreaper, None).2.is_some());
    }
}
