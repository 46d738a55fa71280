//! Blocking work (mounts, unpacking, removing trees) off the event loop.
//!
//! Jobs go to a small pool: at most [`MAX_WORKERS`] threads, started when work arrives and
//! gone after [`IDLE`] without any, so an idle agent has no thread to wake (smol's own pool
//! wakes each idle thread every 500 ms for as long as the agent runs), and a burst (500
//! containers removed at once) costs a handful of threads, not one each: memory stays flat.
//! Work that may wait on the network (an image pull) gets a thread of its own with
//! [`run_long`], so it never holds up the pool.
//!
//! A thread that cannot be started (the host is out of threads or memory) fails that job
//! alone: the caller gets an error to report for its pod, and every other pod stays
//! supervised. So does a job that panics where panics unwind (tests, debug builds); the
//! release build aborts instead, and `sys::panics` keeps the input from doing it twice.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// More would only contend for a gateway's few cores and its flash.
const MAX_WORKERS: usize = 8;
/// How long a worker waits for more work before it ends.
const IDLE: Duration = Duration::from_secs(2);
/// Jobs are short and shallow; the default 2 MiB stacks would only cost address space.
const STACK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot start a thread: {0}")]
    Spawn(std::io::Error),
    #[error("the job failed unexpectedly (a bug; please report it): {0}")]
    Panicked(String),
}

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<PoolState>,
    more: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

static POOL: Pool = Pool {
    state: Mutex::new(PoolState {
        queue: VecDeque::new(),
        workers: 0,
        idle: 0,
    }),
    more: Condvar::new(),
};

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&'static self, job: Job) -> Result<(), JobError> {
        let mut st = self.lock();
        st.queue.push_back(job);
        if st.idle > 0 {
            self.more.notify_one();
            return Ok(());
        }
        if st.workers >= MAX_WORKERS {
            return Ok(());
        }
        st.workers += 1;
        drop(st);
        let spawned = std::thread::Builder::new()
            .name("staticlet-work".into())
            .stack_size(STACK)
            .spawn(move || self.work());
        if let Err(e) = spawned {
            let mut st = self.lock();
            st.workers -= 1;
            // Nobody will run it unless another worker exists: take it back.
            if st.workers == 0 {
                st.queue.pop_back();
                return Err(JobError::Spawn(e));
            }
        }
        Ok(())
    }

    fn work(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .more
                .wait_timeout(st, IDLE)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                st.workers -= 1;
                return;
            }
        }
    }
}

/// Wraps `f` so that its result, or its panic, reaches the awaiting task.
fn job<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (Job, smol::channel::Receiver<Result<T, JobError>>) {
    let (tx, rx) = smol::channel::bounded(1);
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|p| JobError::Panicked(panic_text(p.as_ref())));
        let _ = tx.send_blocking(result);
    });
    (job, rx)
}

async fn result<T>(rx: smol::channel::Receiver<Result<T, JobError>>) -> Result<T, JobError> {
    rx.recv()
        .await
        .unwrap_or_else(|_| Err(JobError::Panicked("the job ended without a result".into())))
}

/// Runs `f` on the pool and waits for its result without blocking the event loop.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JobError> {
    let (job, rx) = job(f);
    POOL.submit(job)?;
    result(rx).await
}

/// Runs `f` on a thread of its own: for work that may wait long (the network).
pub async fn run_long<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    let (job, rx) = job(f);
    std::thread::Builder::new()
        .name("staticlet-long".into())
        .spawn(job)
        .map_err(JobError::Spawn)?;
    result(rx).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_uses_a_bounded_pool_and_a_panic_fails_one_job() {
        let jobs: Vec<_> = (0..200)
            .map(|i| {
                run(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    if i == 7 {
                        panic!("job {i} broke");
                    }
                    (i, POOL.lock().workers)
                })
            })
            .collect();
        let results = smol::block_on(async {
            let mut out = Vec::new();
            for j in jobs {
                out.push(j.await);
            }
            out
        });
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok((n, workers)) => {
                    assert_eq!(*n, i);
                    assert!(*workers <= MAX_WORKERS, "{workers} workers");
                }
                Err(JobError::Panicked(m)) => assert!(i == 7 && m.contains("job 7 broke")),
                Err(e) => panic!("{e}"),
            }
        }
        // Idle workers end.
        std::thread::sleep(IDLE + Duration::from_millis(500));
        assert_eq!(POOL.lock().workers, 0);
    }
}
