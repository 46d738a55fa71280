//! The kubelet's restart backoff: the first restart is immediate, then 10 s, doubling, capped
//! at 300 s, measured from when the container ended; a container that ran for 10 minutes
//! starts over.

use super::Tick;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backoff {
    /// The delay the next failure will wait; `None` before any failure.
    pub delay: Option<Duration>,
    /// No start before this time.
    pub until: Option<Tick>,
}

impl Backoff {
    /// Records an exit at `now` after running for `ran_for`; returns when to start again.
    pub fn exited(&mut self, now: Tick, ran_for: Duration) -> Tick {
        if ran_for >= RESET_AFTER {
            self.delay = None;
        }
        self.failed(now, now)
    }

    /// Records a failure at `now` (a start that failed, a setup that failed).
    pub fn failed(&mut self, now: Tick, _finished: Tick) -> Tick {
        let until = match self.delay {
            None => {
                self.delay = Some(INITIAL);
                now
            }
            Some(d) => {
                self.delay = Some((d * 2).min(MAX));
                now + d
            }
        };
        self.until = Some(until);
        until
    }

    /// Whether a start is held back at `now` (the status then says CrashLoopBackOff).
    pub fn waiting(&self, now: Tick) -> bool {
        self.until.is_some_and(|u| u > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn kubelet_sequence() {
        let mut b = Backoff::default();
        let mut now = s(100);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let until = b.exited(now, s(1));
            waits.push((until - now).as_secs());
            now = until + s(1);
        }
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::default();
        b.exited(s(0), s(1));
        b.exited(s(10), s(1));
        b.exited(s(30), s(1));
        assert_eq!(b.delay, Some(s(40)));
        let until = b.exited(s(2000), s(600));
        assert_eq!(until, s(2000), "a long run restarts at once");
        assert_eq!(b.delay, Some(s(10)));
        assert!(!b.waiting(s(2000)));
        b.exited(s(2001), s(1));
        assert!(b.waiting(s(2005)));
    }
}
