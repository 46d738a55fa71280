//! Stopping one container: preStop, the stop signal, the grace period, then SIGKILL.

use super::handlers::run_handler;
use super::{Context, Event};
use crate::manifest::StaticPod;
use crate::reconcile::Running;
use crate::runtime::crun;
use crate::runtime::podsetup::Sandbox;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

pub async fn stop(
    ctx: Arc<Context>,
    pod: Arc<StaticPod>,
    sb: Sandbox,
    index: usize,
    running: Running,
    grace: Duration,
) {
    let _spec = &pod.pod.spec;
    let c = pod.container(index);
    let began = Instant::now();
    if let (Some(pre), false) = (
        c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()),
        grace.is_zero(),
    ) {
        // In the pod's network namespace, like a probe: an httpGet hook reaches the pod.
        let (ok, msg) = run_handler(&ctx, &pod, &sb, c, &running, pre, grace).await;
        if !ok {
            log::warn!("{}/{}: preStop hook failed: {msg}", pod.full_name(), c.name);
        }
    }
    let remaining = grace.saturating_sub(began.elapsed());
    let mut gone = false;
    if !remaining.is_zero() {
        let signal = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into());
        if ctx.crun.kill(&running.id, &signal).await.is_ok() {
            gone = wait_exit(running.monitor_pid, remaining).await;
        }
    }
    if !gone {
        if !grace.is_zero() {
            log::info!(
                "{}/{}: still running after {}s grace; killing it",
                pod.full_name(),
                c.name,
                grace.as_secs()
            );
        }
        let _ = ctx.crun.kill(&running.id, "SIGKILL").await;
        wait_exit(running.monitor_pid, Duration::from_secs(10)).await;
    }
    let _ = ctx
        .events
        .send(Event::Stopped {
            uid: pod.uid().to_string(),
            index,
        })
        .await;
}
