//! Manifest sources: the directory and the URL. Each source reports its whole current
//! reading as a [`Snapshot`] (the kubelet's "SET" operation); the desired pod set merges them.

pub mod body;
pub mod dir;
pub mod read;
pub mod trust;
pub mod url;
pub mod watch;

use crate::manifest::{ManifestError, StaticPod};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Which source a snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKey {
    Dir(PathBuf),
    Url(String),
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::Dir(p) => write!(f, "{}", p.display()),
            SourceKey::Url(u) => f.write_str(u),
        }
    }
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
    /// What is wrong with the source as a whole right now (a URL body that is not a Pod or a
    /// PodList), while `entries` stay its last good reading. The message is complete (it
    /// names the source and says the pods are kept).
    pub problem: Option<String>,
}

type Shared = std::sync::Arc<std::sync::Mutex<dir::DirSource>>;

/// Runs `f` on the directory source off the event loop: reading and parsing may take a while
/// (up to 10 MB per file), and the agent's event loop must never wait for it. A job that
/// fails (no thread, a bug) is logged and the source stays as it was, to try again later.
async fn off_loop(
    source: &Shared,
    f: impl FnOnce(&mut dir::DirSource) -> bool + Send + 'static,
) -> Option<Snapshot> {
    let source = source.clone();
    let result = crate::sys::blocking::run(move || {
        let mut s = source.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s).then(|| s.snapshot())
    })
    .await;
    result.unwrap_or_else(|e| {
        log::warn!("reading the manifest directory: {e}");
        None
    })
}

/// Watches the manifest directory and sends a snapshot after every change.
pub async fn run_dir<T>(
    source: dir::DirSource,
    relist_every: Duration,
    tx: smol::channel::Sender<T>,
    wrap: fn(Snapshot) -> T,
) {
    let mut watcher = match watch::Watcher::new(source.path()) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!(
                "inotify unavailable ({e}); reading {} every {relist_every:?}",
                source.path().display()
            );
            None
        }
    };
    let source: Shared = std::sync::Arc::new(std::sync::Mutex::new(source));
    off_loop(&source, |s| s.relist(SystemTime::now())).await;
    let first = source.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    if tx.send(wrap(first)).await.is_err() {
        return;
    }
    loop {
        let wake = match watcher.as_mut() {
            Some(w) => {
                let timer = async {
                    smol::Timer::after(relist_every).await;
                    watch::Wake::Relist
                };
                smol::future::or(w.next(), timer).await
            }
            None => {
                smol::Timer::after(relist_every).await;
                watch::Wake::Relist
            }
        };
        let snap = match wake {
            watch::Wake::Files(events) => off_loop(&source, move |s| s.events(&events)).await,
            watch::Wake::Relist => off_loop(&source, |s| s.relist(SystemTime::now())).await,
        };
        if let Some(snap) = snap {
            if tx.send(wrap(snap)).await.is_err() {
                return;
            }
        }
    }
}
