//! The pod's shared PID namespace (`shareProcessNamespace: true`).
//!
//! A PID namespace lives only while its first process (its PID 1) does; a bind mount alone
//! cannot keep it usable. So a pod that shares one gets a holder: this binary re-executed as
//! `staticlet pid-holder <ns dir>`, which makes the namespace and forks its PID 1, a process
//! that only reaps the orphans of the pod's containers (the kubelet's pause container does
//! the same). Like a monitor, it outlives agent restarts; the namespace is pinned on
//! `<ns dir>/pid` for crun to join, the holder's PID is in `<ns dir>/pid-holder`, and the
//! teardown (or the sweep after a crash) kills it, recognised by its command line.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PID_FILE: &str = "pid-holder";
pub const ARG: &str = "pid-holder";

/// `staticlet pid-holder <ns dir>`: unshares a PID namespace, forks its PID 1 (which never
/// returns), writes that PID and exits. Single-threaded from exec, so `fork` is safe.
pub fn main(ns_dir: &Path) -> i32 {
    // SAFETY: setsid, unshare and fork take no pointers; the child only makes
    // async-signal-safe calls before it loops.
    unsafe {
        libc::setsid();
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            return 1;
        }
        match libc::fork() {
            -1 => 1,
            0 => reap_forever(),
            pid => {
                let file = ns_dir.join(PID_FILE);
                i32::from(
                    crate::sys::fsutil::write_replace(&file, pid.to_string().as_bytes()).is_err(),
                )
            }
        }
    }
}

extern "C" fn on_child(_: libc::c_int) {}

/// PID 1 of the pod: reaps whatever the containers leave behind, sleeping in between.
unsafe fn reap_forever() -> ! {
    // A handler (not SIG_IGN) so that pause() returns when an orphan ends.
    let mut sa: libc::sigaction = std::mem::zeroed();
    sa.sa_sigaction = on_child as *const () as usize;
    sa.sa_flags = libc::SA_RESTART;
    libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut());
    for fd in 0..3 {
        libc::close(fd);
    }
    loop {
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        libc::pause();
    }
}

fn holder_pid(ns_dir: &Path) -> Option<i32> {
    fs::read_to_string(ns_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The holder's PID, if that process is the holder of this directory (a PID is reused).
fn holder(ns_dir: &Path) -> Option<i32> {
    let pid = holder_pid(ns_dir)?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0);
    let mine = args.any(|a| a == ARG.as_bytes())
        && args.next() == Some(ns_dir.as_os_str().as_encoded_bytes());
    mine.then_some(pid)
}

/// Whether the namespace pinned on `<ns dir>/pid` is the holder's, and the holder runs.
pub fn alive(ns_dir: &Path) -> bool {
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    holder(ns_dir).is_some_and(|pid| {
        let theirs = id(Path::new(&format!("/proc/{pid}/ns/pid")));
        theirs.is_some() && theirs == id(&ns_dir.join("pid"))
    })
}

/// The pod's PID namespace, made (with its holder) unless it is there and alive.
pub fn ensure(exe: &Path, ns_dir: &Path) -> io::Result<PathBuf> {
    let target = ns_dir.join("pid");
    if alive(ns_dir) {
        return Ok(target);
    }
    release(ns_dir);
    fs::create_dir_all(ns_dir)?;
    let status = Command::new(exe)
        .arg(ARG)
        .arg(ns_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let pid = holder_pid(ns_dir)
        .filter(|_| status.success())
        .ok_or_else(|| io::Error::other(format!("the PID namespace holder failed ({status})")))?;
    fs::write(&target, b"")?;
    crate::sys::mount::mount(
        &format!("/proc/{pid}/ns/pid"),
        &target,
        "none",
        libc::MS_BIND,
        None,
    )?;
    Ok(target)
}

/// Ends the holder (its namespace goes with it) and removes what pinned it.
pub fn release(ns_dir: &Path) {
    if let Some(pid) = holder(ns_dir) {
        // SAFETY: kill takes no pointers; the PID was checked to be our holder.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let target = ns_dir.join("pid");
    crate::sys::mount::unmount(&target);
    let _ = fs::remove_file(&target);
    let _ = fs::remove_file(ns_dir.join(PID_FILE));
}
