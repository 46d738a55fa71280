//! The exits directory, watched: every record a monitor writes (an instance ended) is sent
//! to the agent, including those written before the watch began.

use crate::runtime::records::read_json;
use crate::runtime::ExitRecord;
use inotify::{Inotify, WatchMask};
use std::fs;
use std::path::Path;

pub async fn watch_exits(dir: &Path, tx: smol::channel::Sender<ExitRecord>) {
    let inotify = match Inotify::init().and_then(|i| {
        i.watches()
            .add(dir, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)?;
        smol::Async::new(i)
    }) {
        Ok(i) => i,
        Err(e) => {
            log::error!(
                "cannot watch {}: {e}; container exits are only seen at the next relist",
                dir.display()
            );
            return;
        }
    };
    let record = |name: &str| {
        if name.starts_with('.') || !name.ends_with(".json") {
            return None;
        }
        read_json::<ExitRecord>(&dir.join(name))
    };
    // Records written between the inventory and the watch.
    let existing: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    for name in existing {
        if let Some(rec) = record(&name) {
            if tx.send(rec).await.is_err() {
                return;
            }
        }
    }
    let mut buffer = vec![0u8; 8192];
    let mut inotify = inotify;
    loop {
        // SAFETY: read_events does not close or replace the descriptor.
        let names = unsafe {
            inotify.read_with_mut(|i| {
                let events = i.read_events(&mut buffer)?;
                Ok(events
                    .filter_map(|e| e.name.map(|n| n.to_string_lossy().to_string()))
                    .collect::<Vec<_>>())
            })
        }
        .await;
        let Ok(names) = names else { continue };
        for name in names {
            if let Some(rec) = record(&name) {
                if tx.send(rec).await.is_err() {
                    return;
                }
            }
        }
    }
}
