use super::*;
use crate::events::{Event, Subject, Type};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn ev(pod: &str, reason: &str, message: &str, t: u64) -> Event {
    Event {
        subject: Subject::pod("default", pod, "uid-1").container("main", false),
        kind: Type::Normal,
        reason: reason.into(),
        message: message.into(),
        at: at(t),
    }
}

#[test]
fn repeats_aggregate_into_one_entry_with_a_count() {
    let mut s = Store::new(Limits::default(), true, "node1");
    s.record(ev("web", "Started", "Started container main", 0));
    s.record(ev(
        "web",
        "BackOff",
        "Back-off restarting failed container",
        1,
    ));
    s.record(ev(
        "web",
        "BackOff",
        "Back-off restarting failed container",
        20,
    ));
    s.record(ev(
        "web",
        "BackOff",
        "Back-off restarting failed container",
        50,
    ));
    let e: Vec<&Entry> = s.entries().collect();
    assert_eq!(e.len(), 2);
    let back = e[1];
    assert_eq!((back.reason.as_str(), back.count), ("BackOff", 3));
    assert_eq!(back.first, "2023-11-14T22:13:21Z");
    assert_eq!(back.last, "2023-11-14T22:14:10Z");
    assert!(back.name.starts_with("web."), "{}", back.name);
    assert_eq!(
        back.subject.field_path.as_deref(),
        Some("spec.containers{main}")
    );
    // Posted up to 2, then repeated: pending again, as an update of the same object.
    let name = back.name.clone();
    s.mark_posted(&name, 3);
    assert_eq!(s.pending_count(), 1, "the Started entry");
    s.mark_posted(&e_name(&s, 0), 1);
    assert_eq!(s.next_pending(), None);
    s.record(ev(
        "web",
        "BackOff",
        "Back-off restarting failed container",
        90,
    ));
    let p = s.next_pending().unwrap();
    assert_eq!((p.name.as_str(), p.count, p.posted), (name.as_str(), 4, 3));
}

fn e_name(s: &Store, i: usize) -> String {
    s.entries().nth(i).unwrap().name.clone()
}

#[test]
fn many_different_messages_combine_as_similar_events() {
    let mut s = Store::new(Limits::default(), true, "node1");
    for i in 0..15 {
        s.record(ev(
            "web",
            "Unhealthy",
            &format!("Liveness probe failed: {i}"),
            i,
        ));
    }
    let e: Vec<&Entry> = s.entries().collect();
    assert_eq!(e.len(), 10, "9 apart, then one combined");
    let last = e[9];
    assert_eq!(last.count, 6);
    assert_eq!(
        last.message,
        "(combined from similar events): Liveness probe failed: 14"
    );
    // After 10 quiet minutes they are apart again.
    s.record(ev("web", "Unhealthy", "Liveness probe failed: x", 14 + 601));
    assert_eq!(
        s.entries().last().unwrap().message,
        "Liveness probe failed: x"
    );
}

#[test]
fn the_bound_drops_the_oldest_and_counts_them() {
    let mut s = Store::new(
        Limits {
            events: 5,
            bytes: 1 << 20,
        },
        true,
        "node1",
    );
    for i in 0..10 {
        s.record(ev(&format!("p{i}"), "Started", "Started container main", i));
    }
    let names: Vec<String> = s.entries().map(|e| e.subject.name.clone()).collect();
    // The notice is newest; four pods survive, the oldest six are gone.
    assert_eq!(names, ["p6", "p7", "p8", "p9", "node1"]);
    assert_eq!(s.dropped(), 6);
    let notice = s.entries().last().unwrap();
    assert_eq!(notice.reason, "EventsDropped");
    assert_eq!(notice.kind, Type::Warning);
    assert_eq!(notice.count, 6);
    assert!(
        notice.message.starts_with("6 events were dropped"),
        "{}",
        notice.message
    );
    assert_eq!(notice.subject, Subject::node("node1"));

    // Posted entries are dropped without being counted.
    for n in s
        .entries()
        .map(|e| (e.name.clone(), e.count))
        .collect::<Vec<_>>()
    {
        s.mark_posted(&n.0, n.1);
    }
    s.record(ev("q", "Started", "Started container main", 100));
    assert_eq!(s.dropped(), 6);

    // Bytes: a long message takes the room of several.
    let mut b = Store::new(
        Limits {
            events: 1000,
            bytes: 4000,
        },
        true,
        "node1",
    );
    for i in 0..20 {
        b.record(ev(&format!("p{i}"), "Failed", &"x".repeat(500), i));
    }
    assert!(b.bytes() <= 4000, "{}", b.bytes());
    assert!(b.dropped() > 10, "{}", b.dropped());
    assert_eq!(b.entries().last().unwrap().reason, "EventsDropped");
}

#[test]
fn without_a_poster_nothing_is_pending_and_saves_round_trip() {
    let mut s = Store::new(Limits::default(), false, "node1");
    s.record(ev("web", "Started", "Started container main", 0));
    assert_eq!(s.pending_count(), 0);

    let mut p = Store::new(Limits::default(), true, "node1");
    p.record(ev("web", "Started", "Started container main", 0));
    p.record(ev("web", "Killing", "Stopping container main", 5));
    let text = serde_json::to_string(&p.saved()).unwrap();
    let mut back = Store::new(Limits::default(), true, "node1");
    back.restore(serde_json::from_str(&text).unwrap());
    assert_eq!(back.saved().entries, p.saved().entries);
    assert_eq!(back.pending_count(), 2);
    // A repeat after the restore updates the same object.
    back.record(ev("web", "Killing", "Stopping container main", 9));
    assert_eq!(back.entries().count(), 2);
    assert_eq!(back.entries().last().unwrap().count, 2);
}

#[test]
fn names_never_collide() {
    let mut s = Store::new(Limits::default(), true, "node1");
    s.record(ev("web", "A", "a", 0));
    s.record(ev("web", "B", "b", 0));
    let names: Vec<String> = s.entries().map(|e| e.name.clone()).collect();
    assert_ne!(names[0], names[1]);
}

#[test]
fn a_gone_pod_takes_its_posted_events_with_it() {
    let mut s = Store::new(Limits::default(), true, "node1");
    s.record(ev("web", "Started", "Started container main", 0));
    s.record(ev("web", "Killing", "Stopping container main", 5));
    let first = e_name(&s, 0);
    s.mark_posted(&first, 1);
    s.forget_pod("uid-1");
    let left: Vec<&str> = s.entries().map(|e| e.reason.as_str()).collect();
    assert_eq!(left, ["Killing"], "what waits for the API server stays");
    assert!(s.similar.is_empty());
    let mut local = Store::new(Limits::default(), false, "node1");
    local.record(ev("web", "Started", "Started container main", 0));
    local.forget_pod("uid-1");
    assert_eq!((local.entries().count(), local.bytes()), (0, 0));
}
