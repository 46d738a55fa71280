//! What the sync tells the agent's users: each static pod's mirror state on the status board
//! (`/pods` condition `staticlet.dev/MirrorSynced`, the MIRROR column of `get pods`), with
//! refusals and errors logged once per change.

use super::api::Api;
use super::diff::Key;
use super::sync::{Link, Syncer};
use crate::status::MirrorState;
use serde_json::Value;

impl<A: Api> Syncer<A> {
    /// Puts each pod's mirror state on the board; logs refusals and errors once.
    pub(super) fn report(&mut self) {
        let wants = super::diff::wants(&self.pods);
        for w in &wants {
            let state = match &self.link {
                Link::Down { reason, .. } => {
                    MirrorState::Pending(format!("no connection to the API server: {reason}"))
                }
                Link::Up => match self.holds.get(&w.key).filter(|h| h.hash == w.hash) {
                    Some(h) => h.state.clone(),
                    None if self.synced(&w.key, &w.hash, &w.pod["status"]) => MirrorState::Synced,
                    None => MirrorState::Pending("not written yet".into()),
                },
            };
            if self.reported.get(&w.uid) == Some(&state) {
                continue;
            }
            let name = super::diff::key_text(&w.key);
            match &state {
                MirrorState::Refused(m) => log::warn!("mirror pod {name} refused: {m}"),
                MirrorState::Pending(m) if self.holds.contains_key(&w.key) => {
                    log::warn!("mirror pod {name}: {m}; retrying")
                }
                _ => {}
            }
            self.board.set_mirror(&w.uid, Some(state.clone()));
            self.reported.insert(w.uid.clone(), state);
        }
        let gone: Vec<String> = self
            .reported
            .keys()
            .filter(|u| !wants.iter().any(|w| &w.uid == *u))
            .cloned()
            .collect();
        for uid in gone {
            self.board.set_mirror(&uid, None);
            self.reported.remove(&uid);
        }
    }

    fn synced(&self, key: &Key, hash: &str, status: &Value) -> bool {
        let (Some(s), Some(w)) = (self.seen.get(key), self.written.get(key)) else {
            return false;
        };
        s.hash == hash
            && !s.deleting
            && w.mirror_uid == s.uid
            && super::diff::same_status(&w.status, status)
    }
}
