//! The event buffer: every event the agent records, aggregated as the kubelet's event
//! correlator aggregates them, and bounded by count and bytes. Pure (no I/O, no clock: each
//! event carries its time), so the rules are unit-tested here; [`super::Recorder`] shares it
//! between the agent and the poster and keeps it on disk.
//!
//! Aggregation follows client-go's `EventCorrelator`:
//! - an event identical to one already recorded (same object, container, type, reason and
//!   message) is the same Event object with `count` + 1 and a new `lastTimestamp`;
//! - when more than 10 events of the same object, type and reason but different messages
//!   come within 10 minutes of each other, the rest are folded into one whose message starts
//!   with `(combined from similar events): `.
//!
//! An entry is pending while the API server has fewer occurrences of it than were recorded
//! (`posted < count`). When the buffer is full the oldest entries go first; each pending one
//! dropped is counted, and the count is reported by one `EventsDropped` Warning on the Node.

use super::{Event, Subject, Type};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

/// How many distinct messages of one object and reason are kept apart before they combine.
const SIMILAR_MAX: usize = 10;
/// ... within this long of the last one.
const SIMILAR_WINDOW: Duration = Duration::from_secs(600);
/// The aggregator's memory (client-go keeps an LRU of 4096; a gateway has fewer objects).
const SIMILAR_KEYS: usize = 1024;
/// What one entry costs beyond its strings (field names, numbers, timestamps, as JSON).
const ENTRY_OVERHEAD: usize = 200;
/// The reason of the Node event that counts dropped events.
pub const DROPPED_REASON: &str = "EventsDropped";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            events: 1000,
            bytes: 1024 * 1024,
        }
    }
}

/// One Event object: the first occurrence and every repeat of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The Event object's name: `<object>.<first time in hex nanoseconds>`, as the kubelet's.
    pub name: String,
    /// What aggregates into this entry (see the module documentation).
    pub key: String,
    pub subject: Subject,
    #[serde(rename = "type")]
    pub kind: Type,
    pub reason: String,
    pub message: String,
    pub count: u32,
    /// RFC 3339, as the API's `firstTimestamp` and `lastTimestamp`.
    pub first: String,
    pub last: String,
    /// Occurrences the API server has (0: the object does not exist there yet).
    #[serde(default)]
    pub posted: u32,
}

impl Entry {
    pub fn pending(&self) -> bool {
        self.posted < self.count
    }

    fn size(&self) -> usize {
        ENTRY_OVERHEAD
            + self.name.len()
            + self.key.len()
            + self.message.len()
            + self.reason.len()
            + self.subject.namespace.len()
            + self.subject.name.len()
            + self.subject.uid.len()
            + self.subject.field_path.as_ref().map_or(0, String::len)
    }
}

/// Messages seen per object, type and reason, for the "similar events" rule.
#[derive(Debug, Clone)]
struct Similar {
    last: SystemTime,
    /// Hashes of the distinct messages seen (a probe's output can be long).
    messages: Vec<u64>,
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// What is kept on disk: the entries and the count of pending events dropped.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    #[serde(default)]
    pub dropped: u64,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

#[derive(Debug, Default)]
pub struct Store {
    entries: VecDeque<Entry>,
    bytes: usize,
    limits: Limits,
    /// Pending events dropped because the buffer was full (reported, and kept on disk).
    dropped: u64,
    similar: HashMap<String, Similar>,
    /// Whether entries wait for a poster; without one, every entry counts as posted.
    posting: bool,
    /// The nanosecond stamp of the last name made, so two names never collide.
    last_nanos: u128,
    /// This node's name, for the dropped-events notice.
    node: String,
    /// Changes with every change of the entries (what the poster saves on disk).
    pub generation: u64,
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Store {
    pub fn new(limits: Limits, posting: bool, node: &str) -> Store {
        Store {
            limits: Limits {
                events: limits.events.max(2),
                bytes: limits.bytes.max(4 * ENTRY_OVERHEAD),
            },
            posting,
            node: node.to_string(),
            ..Default::default()
        }
    }

    /// Takes back what was saved (entries beyond the limits are dropped as usual).
    pub fn restore(&mut self, saved: Saved) {
        self.dropped = saved.dropped;
        for mut e in saved.entries {
            if !self.posting {
                e.posted = e.count;
            }
            self.push(e);
        }
        self.generation += 1;
    }

    pub fn saved(&self) -> Saved {
        Saved {
            dropped: self.dropped,
            entries: self.entries.iter().cloned().collect(),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn pending_count(&self) -> usize {
        self.entries.iter().filter(|e| e.pending()).count()
    }

    /// The oldest entry the API server does not have as it is.
    pub fn next_pending(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.pending())
    }

    /// The API server now has `count` occurrences of entry `name`.
    pub fn mark_posted(&mut self, name: &str, count: u32) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.posted = e.posted.max(count);
            self.generation += 1;
        }
    }

    /// Forgets what is kept about a pod that is gone (by its static UID): its posted events
    /// (describe cannot show a pod that is gone) and what the aggregator remembers of it, so
    /// the memory goes with the pod. Events still waiting for the API server stay.
    pub fn forget_pod(&mut self, uid: &str) {
        let before = self.entries.len();
        self.entries.retain(|e| e.subject.uid != uid || e.pending());
        if self.entries.len() != before {
            self.bytes = self.entries.iter().map(Entry::size).sum();
            self.generation += 1;
        }
        let marker = format!("\u{0}{uid}\u{0}");
        self.similar.retain(|k, _| !k.contains(&marker));
        self.entries.shrink_to_fit();
        self.similar.shrink_to_fit();
    }

    /// The API server no longer has entry `name` (deleted, expired): create it again.
    pub fn mark_unposted(&mut self, name: &str) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.posted = 0;
            self.generation += 1;
        }
    }

    /// Records one event; returns the number of pending events this dropped (0 mostly).
    pub fn record(&mut self, event: Event) -> u64 {
        let at = crate::sys::timefmt::rfc3339(event.at);
        let (key, message) = self.aggregate(&event);
        let found = self.entries.iter().position(|e| e.key == key);
        let entry = match found.and_then(|i| self.remove(i)) {
            Some(mut e) => {
                e.count = e.count.saturating_add(1);
                e.last = at;
                e.message = message;
                e
            }
            None => {
                let stamp = nanos(event.at).max(self.last_nanos + 1);
                self.last_nanos = stamp;
                Entry {
                    name: format!("{}.{stamp:x}", event.subject.name),
                    key,
                    subject: event.subject,
                    kind: event.kind,
                    reason: event.reason,
                    message,
                    count: 1,
                    first: at.clone(),
                    last: at,
                    posted: 0,
                }
            }
        };
        let mut entry = entry;
        if !self.posting {
            entry.posted = entry.count;
        }
        self.generation += 1;
        let dropped = self.push(entry);
        if dropped > 0 {
            self.note_dropped(dropped, event.at);
        }
        dropped
    }

    /// The key this event aggregates under and its message, after the similar-events rule.
    fn aggregate(&mut self, event: &Event) -> (String, String) {
        let s = &event.subject;
        let object = format!(
            "{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{}",
            s.kind,
            s.namespace,
            s.name,
            s.uid,
            s.field_path.as_deref().unwrap_or(""),
            event.kind,
            event.reason
        );
        let exact = format!("{object}\u{0}{}", event.message);
        if self.similar.len() >= SIMILAR_KEYS && !self.similar.contains_key(&object) {
            // Forget the entry seen longest ago (a full scan, but only once the map is full).
            if let Some(oldest) = self
                .similar
                .iter()
                .min_by_key(|(_, v)| v.last)
                .map(|(k, _)| k.clone())
            {
                self.similar.remove(&oldest);
            }
        }
        let sim = self.similar.entry(object.clone()).or_insert(Similar {
            last: event.at,
            messages: Vec::new(),
        });
        let stale = event
            .at
            .duration_since(sim.last)
            .is_ok_and(|d| d > SIMILAR_WINDOW);
        if stale {
            sim.messages.clear();
        }
        sim.last = event.at;
        let message = hash(&event.message);
        if !sim.messages.contains(&message) {
            sim.messages.push(message);
        }
        if sim.messages.len() < SIMILAR_MAX {
            return (exact, event.message.clone());
        }
        sim.messages.truncate(SIMILAR_MAX - 1);
        (
            object,
            format!("(combined from similar events): {}", event.message),
        )
    }

    fn remove(&mut self, index: usize) -> Option<Entry> {
        let e = self.entries.remove(index)?;
        self.bytes = self.bytes.saturating_sub(e.size());
        Some(e)
    }

    /// Appends an entry, dropping the oldest beyond the limits; returns the pending dropped.
    fn push(&mut self, entry: Entry) -> u64 {
        self.bytes += entry.size();
        self.entries.push_back(entry);
        let mut dropped = 0;
        while self.entries.len() > 1
            && (self.entries.len() > self.limits.events || self.bytes > self.limits.bytes)
        {
            if let Some(old) = self.remove(0) {
                if old.pending() && old.reason != DROPPED_REASON {
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Keeps one Node event up to date with the total dropped: it is the newest entry, so it
    /// is posted after whatever survived, and the oldest entries go before it does.
    fn note_dropped(&mut self, n: u64, at: SystemTime) {
        self.dropped += n;
        let old = self
            .entries
            .iter()
            .position(|e| e.reason == DROPPED_REASON)
            .and_then(|i| self.remove(i));
        let stamp = crate::sys::timefmt::rfc3339(at);
        let mut entry = match old {
            Some(mut e) => {
                e.last = stamp;
                e
            }
            None => {
                let stamp_n = nanos(at).max(self.last_nanos + 1);
                self.last_nanos = stamp_n;
                Entry {
                    name: format!("{}.{stamp_n:x}", self.node),
                    key: DROPPED_REASON.into(),
                    subject: Subject::node(&self.node),
                    kind: Type::Warning,
                    reason: DROPPED_REASON.into(),
                    message: String::new(),
                    count: 0,
                    first: stamp.clone(),
                    last: stamp,
                    posted: 0,
                }
            }
        };
        self.describe_dropped(&mut entry);
        // Making room for the notice may drop more: count those too.
        let more = self.push(entry);
        if more > 0 {
            self.dropped += more;
            if let Some(mut e) = self.entries.pop_back() {
                self.bytes = self.bytes.saturating_sub(e.size());
                self.describe_dropped(&mut e);
                self.bytes += e.size();
                self.entries.push_back(e);
            }
        }
        if !self.posting {
            if let Some(e) = self.entries.back_mut() {
                e.posted = e.count;
            }
        }
    }

    fn describe_dropped(&self, e: &mut Entry) {
        e.count = u32::try_from(self.dropped).unwrap_or(u32::MAX);
        e.message = format!(
            "{} events were dropped, oldest first, while they could not be posted (the buffer keeps {} events and {} bytes)",
            self.dropped, self.limits.events, self.limits.bytes
        );
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
