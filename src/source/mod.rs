//! Manifest sources: the directory and the URL. Each source reports its whole current
//! reading as a [`Snapshot`] (the kubelet's "SET" operation); the desired pod set merges them.

pub mod dir;
pub mod url;

use crate::manifest::{ManifestError, StaticPod};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Which source a snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKey {
    Dir(PathBuf),
    Url(String),
}

/// One manifest (a file, or one item of the URL's body) and how it read.
#[derive(Debug, Clone)]
pub struct Entry {
    pub origin: PathBuf,
    pub result: Result<StaticPod, ManifestError>,
}

/// Everything a source holds right now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub key: SourceKey,
    pub entries: Vec<Entry>,
    /// False until the source has been read once; until then its absence removes nothing.
    pub complete: bool,
}

/// Watches the manifest directory and sends a snapshot after every change.
pub async fn run_dir<T>(
    mut source: dir::DirSource,
    relist_every: Duration,
    tx: smol::channel::Sender<T>,
    wrap: fn(Snapshot) -> T,
) {
    let mut watcher = match dir::Watcher::new(source.path()) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!(
                "inotify unavailable ({e}); reading {} every {relist_every:?}",
                source.path().display()
            );
            None
        }
    };
    source.relist(SystemTime::now());
    if tx.send(wrap(source.snapshot())).await.is_err() {
        return;
    }
    loop {
        let wake = match watcher.as_mut() {
            Some(w) => {
                w.ensure_watch();
                let timer = async {
                    smol::Timer::after(relist_every).await;
                    dir::Wake::Relist
                };
                smol::future::or(w.next(), timer).await
            }
            None => {
                smol::Timer::after(relist_every).await;
                dir::Wake::Relist
            }
        };
        let changed = match wake {
            dir::Wake::Files(names) => {
                let mut changed = false;
                for n in names {
                    changed |= source.reload(&n);
                }
                changed
            }
            dir::Wake::Relist => source.relist(SystemTime::now()),
        };
        if changed && tx.send(wrap(source.snapshot())).await.is_err() {
            return;
        }
    }
}
