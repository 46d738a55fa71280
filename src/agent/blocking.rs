//! Blocking work (mounts, unpacking, removing trees) on a thread of its own, awaited from the
//! event loop. A pool would keep idle threads waking up (smol's wakes each one every 500 ms
//! for as long as the agent runs); a thread per job costs tens of microseconds and then is
//! gone, so an idle agent is asleep.
//!
//! A job that panics, or a thread that cannot be started (the host is out of threads or
//! memory), fails that job alone: the caller gets an error to report for its pod, and every
//! other pod stays supervised.

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot start a thread: {0}")]
    Spawn(std::io::Error),
    #[error("the job failed unexpectedly (a bug; please report it): {0}")]
    Panicked(String),
}

/// Runs `f` on a new thread and waits for its result without blocking the event loop.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JobError> {
    let (tx, rx) = smol::channel::bounded(1);
    std::thread::Builder::new()
        .name("staticlet-work".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map_err(|p| JobError::Panicked(panic_text(p.as_ref())));
            let _ = tx.send_blocking(result);
        })
        .map_err(JobError::Spawn)?;
    rx.recv()
        .await
        .unwrap_or_else(|_| Err(JobError::Panicked("no result".into())))
}

/// Runs a job whose failure only needs to be logged (cleanup that is retried later anyway).
pub async fn run_logged(what: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = run(f).await {
        log::warn!("{what}: {e}");
    }
}

/// The message of a panic payload (a `&str` or a `String`, as `panic!` makes them).
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
