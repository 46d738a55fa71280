//! Stopping one instance: preStop, the stop signal, the grace period, then SIGKILL.

use super::handler::run_handler;
use super::{cli as crun, Context};
use crate::runtime::{StopOutcome, StopSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an instance may take to die after SIGKILL before it is reported as still there.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// Waits until `pid` has exited, at most `limit`. Uses a pidfd where the kernel has them.
async fn wait_exit(pid: i32, limit: Duration) -> bool {
    // SAFETY: pidfd_open returns a new descriptor or -1; we take ownership of it.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let deadline = Instant::now() + limit;
    if fd >= 0 {
        let owned =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        if let Ok(a) = smol::Async::new(owned) {
            return smol::future::or(async { a.readable().await.is_ok() }, async {
                smol::Timer::at(deadline).await;
                !crun::alive(pid)
            })
            .await;
        }
    }
    while Instant::now() < deadline {
        if !crun::alive(pid) {
            return true;
        }
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    !crun::alive(pid)
}

pub async fn stop(ctx: &Arc<Context>, spec: &StopSpec) -> StopOutcome {
    let began = Instant::now();
    let grace = spec.grace;
    let mut outcome = StopOutcome::default();
    if let (Some(pre), false) = (&spec.pre_stop, grace.is_zero()) {
        // In the pod's network namespace, like a probe: an httpGet hook reaches the pod.
        let mut pre = pre.clone();
        pre.timeout = grace;
        let result = run_handler(ctx, &pre).await;
        if !result.success {
            outcome.pre_stop_failed = Some(result.message);
        }
    }
    let remaining = grace.saturating_sub(began.elapsed());
    if !remaining.is_zero() && ctx.crun.kill(&spec.id, &spec.signal).await.is_ok() {
        outcome.gone = wait_exit(spec.wait_pid, remaining).await;
    }
    if !outcome.gone {
        outcome.killed = !grace.is_zero();
        outcome.gone = match ctx.crun.kill(&spec.id, "SIGKILL").await {
            // crun has no such container: nothing of it is left to wait for (its pid may
            // already belong to another process). Its exit record comes, or is taken as lost.
            Err(e) if e.is_gone() => true,
            _ => wait_exit(spec.wait_pid, KILL_WAIT).await,
        };
    }
    outcome
}
