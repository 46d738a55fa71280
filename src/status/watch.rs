//! One inotify instance for all log followers of the status endpoint: a follower waits for
//! an event on its container's log directory (a write, or the new file of a rotation)
//! instead of polling, so an idle follower costs no CPU. One instance, not one per follower,
//! because inotify instances are a per-user limit (128 by default) shared with the agent's
//! manifest watcher and every other process on the gateway.

use event_listener::{Event, EventListener};
use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use smol::Async;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

pub struct DirWatcher {
    /// Adds and removes watches; the events are read by [`DirWatcher::new`]'s future.
    watches: Option<RefCell<Watches>>,
    /// Per watched directory: its wake-up and how many followers use it.
    dirs: RefCell<HashMap<WatchDescriptor, (Rc<Event>, usize)>>,
}

/// A follower's interest in one directory; the watch goes when the last follower does.
pub struct DirWatch {
    watcher: Rc<DirWatcher>,
    wd: WatchDescriptor,
    event: Rc<Event>,
}

impl DirWatch {
    pub fn listen(&self) -> EventListener {
        self.event.listen()
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        let mut dirs = self.watcher.dirs.borrow_mut();
        let last = match dirs.get_mut(&self.wd) {
            Some((_, users)) => {
                *users -= 1;
                *users == 0
            }
            None => false,
        };
        if last {
            dirs.remove(&self.wd);
            if let Some(w) = &self.watcher.watches {
                // Fails when the directory is already gone (the watch went with it).
                let _ = w.borrow_mut().remove(self.wd.clone());
            }
        }
    }
}

impl DirWatcher {
    /// The watcher, and the future that reads its events (to run for as long as the server
    /// does). Without inotify (the per-user limit reached) followers fall back to a slow
    /// re-check.
    pub fn new() -> (Rc<DirWatcher>, impl std::future::Future<Output = ()>) {
        let inotify = Inotify::init().and_then(Async::new);
        if let Err(e) = &inotify {
            log::warn!(
                "status endpoint: no inotify ({e}); log followers re-check every second instead"
            );
        }
        let inotify = inotify.ok();
        let watcher = Rc::new(DirWatcher {
            watches: inotify
                .as_ref()
                .map(|i| RefCell::new(i.get_ref().watches())),
            dirs: RefCell::new(HashMap::new()),
        });
        (watcher.clone(), watcher.run(inotify))
    }

    /// Watches `dir` for changes to its files; None when it cannot be watched.
    pub fn watch(self: &Rc<Self>, dir: &Path) -> Option<DirWatch> {
        let watches = self.watches.as_ref()?;
        let mask = WatchMask::MODIFY
            | WatchMask::CREATE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE;
        let added = watches.borrow_mut().add(dir, mask);
        let wd = match added {
            Ok(wd) => wd,
            Err(e) => {
                log::debug!("status endpoint: cannot watch {}: {e}", dir.display());
                return None;
            }
        };
        let mut dirs = self.dirs.borrow_mut();
        // The same directory gives the same descriptor: share its event.
        let entry = dirs
            .entry(wd.clone())
            .or_insert_with(|| (Rc::new(Event::new()), 0));
        entry.1 += 1;
        Some(DirWatch {
            watcher: self.clone(),
            wd,
            event: entry.0.clone(),
        })
    }

    /// Reads events for as long as the server runs and wakes the followers of each directory.
    async fn run(self: Rc<Self>, inotify: Option<Async<Inotify>>) {
        let Some(mut inotify) = inotify else {
            return;
        };
        let mut buffer = vec![0u8; 4096];
        loop {
            let woken = unsafe {
                // SAFETY: read_events neither closes nor replaces the file descriptor.
                inotify
                    .read_with_mut(|i| {
                        let mut woken = Vec::new();
                        for ev in i.read_events(&mut buffer)? {
                            if ev.mask.contains(inotify::EventMask::Q_OVERFLOW) {
                                woken.clear();
                                woken.push(None);
                                break;
                            }
                            woken.push(Some(ev.wd));
                        }
                        Ok(woken)
                    })
                    .await
            };
            let woken = match woken {
                Ok(w) => w,
                Err(e) => {
                    log::warn!("status endpoint: reading inotify events: {e}");
                    smol::Timer::after(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let dirs = self.dirs.borrow();
            for wd in woken {
                match wd {
                    // Events were lost: wake everyone to look again.
                    None => dirs.values().for_each(|(e, _)| {
                        e.notify(usize::MAX);
                    }),
                    Some(wd) => {
                        if let Some((e, _)) = dirs.get(&wd) {
                            e.notify(usize::MAX);
                        }
                    }
                }
            }
        }
    }
}
