//! The URL source's thread: the cache first, then polls, backing off after failures.

use super::*;

/// Jitter in [0.8, 1.2) from the clock's low bits: enough to keep a fleet from polling in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.8 + (nanos % 400) as f64 / 1000.0)
}

/// The URL source's thread: the cache first (boot offline), then a poll every `every`, with
/// backoff after failures. Each new version is sent as a snapshot, and so is each change of
/// the source's problem (a refused body, then a good one again).
pub fn run(mut src: UrlSource, every: Duration, send: impl Fn(Snapshot) -> bool) {
    match src.cached() {
        Some((snap, meta)) => {
            log::info!(
                "manifest URL {}: starting from the cached version fetched at {} ({} pod(s))",
                src.url,
                meta.fetched_at,
                snap.entries.len()
            );
            src.last = Some(snap.clone());
            if !send(snap) {
                return;
            }
        }
        None => log::info!("manifest URL {}: no cached version yet", src.url),
    }
    let mut failures = 0u32;
    loop {
        let now = crate::sys::timefmt::now_rfc3339();
        let (wait, snap) = match src.poll(&now) {
            Poll::Changed(snap) => {
                src.report(None);
                src.problem = None;
                failures = 0;
                log::info!(
                    "manifest URL {}: new version ({} pod(s)), fetched at {now}",
                    src.url,
                    snap.entries.len()
                );
                src.last = Some(snap.clone());
                (every, Some(snap))
            }
            Poll::Unchanged => {
                src.report(None);
                failures = 0;
                (every, src.problem_changed(None))
            }
            Poll::Failed(e) => {
                src.report(Some(e));
                failures = failures.saturating_add(1);
                (backoff(every, failures), None)
            }
            Poll::Refused(e) => {
                src.report(None);
                failures = failures.saturating_add(1);
                let problem = format!(
                    "manifest URL {}: {e}; keeping the current pods and the cached version",
                    src.url
                );
                (backoff(every, failures), src.problem_changed(Some(problem)))
            }
        };
        if let Some(snap) = snap {
            if !send(snap) {
                return;
            }
        }
        std::thread::sleep(jitter(wait));
    }
}

/// Doubling from `every` after each failure, at most 300 s (or `every`, when it is longer).
fn backoff(every: Duration, failures: u32) -> Duration {
    (every * 2u32.saturating_pow(failures.clamp(1, 5) - 1)).min(MAX_BACKOFF.max(every))
}
