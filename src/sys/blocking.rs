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
/// Probes (httpGet, tcpSocket) run on a pool of their own, so a probe that waits out its
/// timeout never holds up a pod's setup, and one whose workers outlive the usual probe
/// period (10 s): a probe then costs no thread start and exit. A probe that finds every
/// worker busy gets a thread of its own, so that probes waiting out their timeouts never
/// delay the others (the kubelet runs each probe on its own goroutine).
const PROBE_WORKERS: usize = 2;
const PROBE_IDLE: Duration = Duration::from_secs(30);
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
    name: &'static str,
    max: usize,
    idle_for: Duration,
    /// Whether work that finds all `max` workers busy gets a thread of its own rather
    /// than waiting in the queue.
    overflow: bool,
    state: Mutex<PoolState>,
    more: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

static POOL: Pool = Pool::new("staticlet-work", MAX_WORKERS, IDLE, false);
static PROBES: Pool = Pool::new("probe", PROBE_WORKERS, PROBE_IDLE, true);

thread_local! {
    /// Set by a job that leaves its thread unfit for more work (a namespace it could not
    /// leave): the worker ends after that job instead of taking the next.
    static RETIRE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Pool {
    const fn new(name: &'static str, max: usize, idle_for: Duration, overflow: bool) -> Pool {
        Pool {
            name,
            max,
            idle_for,
            overflow,
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                workers: 0,
                idle: 0,
            }),
            more: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&'static self, job: Job) -> Result<(), JobError> {
        let mut st = self.lock();
        st.queue.push_back(job);
        // Idle workers are counted until they wake: only as many jobs as there are idle
        // workers can count on them, the rest need a worker of their own.
        if st.queue.len() <= st.idle {
            self.more.notify_one();
            return Ok(());
        }
        if st.workers >= self.max {
            drop(st);
            if self.overflow {
                // Takes whatever waits, and ends once nothing does. Should it not start,
                // the job waits for a worker.
                let _ = self.spawn(Pool::drain);
            }
            return Ok(());
        }
        st.workers += 1;
        drop(st);
        if let Err(e) = self.spawn(Pool::work) {
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

    /// Starts a thread of this pool running `body`: [`Pool::work`] for a worker already
    /// counted in `workers`, [`Pool::drain`] for an overflow thread.
    fn spawn(&'static self, body: fn(&'static Pool)) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(self.name.into())
            .stack_size(STACK)
            .spawn(move || body(self))
            .map(drop)
    }

    /// A retired worker's place, when jobs wait and nobody is idle to take them. Should no
    /// thread start and no other worker remain, the waiting jobs fail (their callers see
    /// "the job ended without a result") rather than wait for ever.
    fn replace_worker(&'static self) {
        if self.spawn(Pool::work).is_err() {
            let mut st = self.lock();
            st.workers -= 1;
            if st.workers == 0 {
                st.queue.clear();
            }
        }
    }

    /// Runs queued jobs until there are none: an overflow thread's life.
    fn drain(&'static self) {
        loop {
            let Some(job) = self.lock().queue.pop_front() else {
                return;
            };
            job();
            if RETIRE.get() {
                return;
            }
        }
    }

    fn work(&'static self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job();
                st = self.lock();
                if RETIRE.get() {
                    // The place passes to a new worker when jobs wait and nobody is idle.
                    if !st.queue.is_empty() && st.idle == 0 {
                        drop(st);
                        self.replace_worker();
                    } else {
                        st.workers -= 1;
                    }
                    return;
                }
                continue;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .more
                .wait_timeout(st, self.idle_for)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                st.workers -= 1;
                let last = st.workers == 0;
                drop(st);
                if last && std::ptr::eq(self, &POOL) {
                    give_back_free_memory();
                }
                return;
            }
        }
    }
}

/// Returns the heap's free pages to the kernel once a burst of work is over (the pool's last
/// worker has ended: pods started, or removed and their state dropped). glibc's malloc keeps
/// them otherwise: about 200 kB of the agent's private memory after 20 pods started
/// (measured, `malloc_trim` through gdb), tens of MB after a pod of hundreds of containers
/// went. musl's allocator, the gateway builds', unmaps freed memory by itself.
fn give_back_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and touches only free memory.
    unsafe {
        libc::malloc_trim(0);
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

/// Runs `f` on the probe pool, on a thread that has joined the network namespace `netns`
/// (when given) for the time of `f`, so that what `f` connects to is the pod's loopback and
/// addresses, as its containers see them. The worker returns to the agent's own namespace
/// afterwards; one that cannot is retired, never reused.
pub async fn run_in_netns<T: Send + 'static>(
    netns: Option<std::path::PathBuf>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<Result<T, String>, JobError> {
    let (job, rx) = job(move || {
        let Some(ns) = netns else {
            return Ok(f());
        };
        let home = home_netns().map_err(|e| format!("/proc/self/ns/net: {e}"))?;
        let pod = std::fs::File::open(&ns).map_err(|e| format!("{}: {e}", ns.display()))?;
        enter_netns(&pod).map_err(|e| format!("setns {}: {e}", ns.display()))?;
        // Back home however `f` ends, a panic included.
        let _home = GoHome(home);
        Ok(f())
    });
    PROBES.submit(job)?;
    result(rx).await
}

/// The agent's own network namespace, opened once (the main thread never leaves it).
fn home_netns() -> std::io::Result<&'static std::fs::File> {
    static HOME: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if let Some(f) = HOME.get() {
        return Ok(f);
    }
    let f = std::fs::File::open("/proc/self/ns/net")?;
    Ok(HOME.get_or_init(|| f))
}

struct GoHome(&'static std::fs::File);

impl Drop for GoHome {
    fn drop(&mut self) {
        if let Err(e) = enter_netns(self.0) {
            log::error!(
                "a probe thread cannot return to the agent's network namespace ({e}); it is retired"
            );
            RETIRE.set(true);
        }
    }
}

fn enter_netns(ns: &std::fs::File) -> std::io::Result<()> {
    // SAFETY: setns on an open namespace file descriptor; it changes this thread only.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(ns), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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
mod tests;
