//! The per-container monitor on real crun: it ends on SIGTERM, and it does not ignore being
//! refused as a child subreaper (qemu-user 7.2 refuses the prctl, which is how CI runs the ARM
//! builds; a seccomp filter does the same here).

use crate::common;

use common::*;
use std::time::Duration;

/// Makes `prctl(PR_SET_CHILD_SUBREAPER)` fail with EINVAL in this thread and every process it
/// starts from now on (a seccomp filter is inherited across fork and exec), as qemu-user 7.2
/// answers it. Other test threads are not affected: the filter is installed without TSYNC.
fn refuse_subreaper_from_here_on() {
    fn stmt(code: u32, k: u32) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump_eq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf,
            k,
        }
    }
    // seccomp_data: nr at 0, arch at 4, instruction pointer at 8, args (u64 each) from 16.
    let arg0_low = if cfg!(target_endian = "little") {
        16
    } else {
        20
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let mut filter = [
        stmt(load, 0),
        jump_eq(libc::SYS_prctl as u32, 0, 3),
        stmt(load, arg0_low),
        jump_eq(libc::PR_SET_CHILD_SUBREAPER as u32, 0, 1),
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl and seccomp with a valid, live filter program.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
        // The filter must bite, or this test would check nothing.
        assert_eq!(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL)
        );
    }
}

#[test]
fn a_monitor_ends_on_sigterm() {
    let mut a = Agent::new("mon-term");
    a.start();
    a.write_manifest("p.yaml", &pod_yaml("p", "", "", "[sleep, '1000']"));
    a.wait_running("p", "main");
    let monitors = a.monitors();
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    // SAFETY: kill(2) on a process of this test's agent.
    unsafe { libc::kill(monitors[0], libc::SIGTERM) };
    wait_until(
        "the monitor to end on SIGTERM (is SIGTERM blocked in it?)",
        Duration::from_secs(10),
        || a.monitors().is_empty().then_some(()),
    );
}

/// Where nothing may become a subreaper (here a seccomp filter, inherited by crun, which in
/// the foreground needs it as well), the container cannot be supervised: its start fails with
/// the reason. Before, the monitor ignored the refusal, `crun run --detach` started the
/// container, its init went to PID 1, and its exit was never seen: the pod stayed Running.
/// (Under qemu-user only the emulated monitor is refused and crun, native, runs the pods in
/// the foreground; cross/ci's end-to-end runs with the ARM binaries cover that.)
#[test]
fn a_refused_subreaper_is_reported_not_ignored() {
    let mut a = Agent::new("mon-nosub");
    refuse_subreaper_from_here_on();
    a.start();
    a.write_manifest(
        "crash.yaml",
        &pod_yaml("crash", "", "", "[sh, -c, 'echo dying; exit 3']"),
    );
    let c = a.wait_container("crash", "main", "a start error that names the cause", |c| {
        c["lastState"]["terminated"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("subreaper"))
    });
    assert_eq!(c["lastState"]["terminated"]["reason"], "StartError", "{c}");
    wait_until("no monitor left", Duration::from_secs(10), || {
        a.monitors().is_empty().then_some(())
    });
}
