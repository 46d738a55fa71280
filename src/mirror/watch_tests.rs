//! The watch that replaced the periodic list, and the events the sync posts, against the
//! in-memory fake API, step by step with an explicit `now`.

use super::fake::Fake;
use super::tests::{calls, mirror, pod, publish, syncer, syncer_events, syncer_using};
use crate::events::{Event, EventSink, Limits, Recorder, Subject, Type};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LIST: &str = "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode1&resourceVersion=0";

#[test]
fn one_watch_instead_of_a_list_every_ten_seconds() {
    let fake = Fake::new();
    let (mut s, _board) = syncer(&fake, &[]);
    let t0 = Instant::now();
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0);
    let c = calls(&fake);
    assert!(c.contains(&LIST.to_string()), "{c:?}");
    assert!(
        c.iter().any(|c| c.starts_with(
            "WATCH /api/v1/pods?fieldSelector=spec.nodeName%3Dnode1&resourceVersion="
        ) && c.contains("allowWatchBookmarks=true")
            && c.contains("watch=true")),
        "{c:?}"
    );
    assert!(
        c.iter()
            .any(|c| c == "GET /api/v1/nodes/node1?resourceVersion=0"),
        "the Node is read from the cache: {c:?}"
    );
    let first = mirror(&fake, "default", "web").unwrap()["metadata"]["uid"].clone();

    // Someone deletes the mirror pod at once: the watch tells, it comes back, no list.
    fake.admin_remove("default", "web-node1");
    s.step(t0 + Duration::from_secs(1));
    let m = mirror(&fake, "default", "web").expect("recreated");
    assert_ne!(m["metadata"]["uid"], first);
    let c = calls(&fake);
    assert!(
        !c.iter().any(|c| c.starts_with("GET /api/v1/pods")),
        "{c:?}"
    );

    // A minute of steady state: the Lease, six times, and nothing else.
    for i in 2..=61 {
        publish(&mut s, vec![pod("default", "web", "h1", 0)]);
        s.step(t0 + Duration::from_secs(i));
    }
    let c = calls(&fake);
    assert_eq!(c.len(), 6, "{c:?}");
    assert!(
        c.iter()
            .all(|c| c.starts_with("PUT /apis/coordination.k8s.io/")),
        "{c:?}"
    );

    // The watch cache moved on (410 Gone): one list, from the cache, and a new watch.
    fake.expire_watches();
    s.step(t0 + Duration::from_secs(62));
    let c = calls(&fake);
    assert_eq!(c.iter().filter(|c| **c == LIST).count(), 1, "{c:?}");
    assert_eq!(
        c.iter().filter(|c| c.starts_with("WATCH ")).count(),
        1,
        "{c:?}"
    );
}

fn event(pod: &str, uid: &str, reason: &str, message: &str, secs: u64) -> Event {
    Event {
        subject: Subject::pod("default", &format!("{pod}-node1"), uid).container("main", false),
        kind: Type::Warning,
        reason: reason.into(),
        message: message.into(),
        at: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
    }
}

fn posted(fake: &Fake) -> Vec<Value> {
    fake.lock().events.values().cloned().collect()
}

#[test]
fn events_go_to_the_mirror_pod_and_repeats_update_its_count() {
    let fake = Fake::new();
    let (mut s, _board, events) = syncer_events(&fake, &[]);
    let t0 = Instant::now();
    // Recorded before the pod is published (the agent records, then publishes).
    for i in 0..3 {
        events.record(event(
            "web",
            "h1",
            "BackOff",
            "Back-off restarting failed container",
            i,
        ));
    }
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0);
    let mirror_uid = mirror(&fake, "default", "web").unwrap()["metadata"]["uid"].clone();
    let e = posted(&fake);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0]["involvedObject"]["uid"], mirror_uid);
    assert_eq!(e[0]["involvedObject"]["fieldPath"], "spec.containers{main}");
    assert_eq!(e[0]["count"], 3);
    assert_eq!(e[0]["source"]["host"], "node1");
    assert_eq!(e[0]["firstTimestamp"], "2023-11-14T22:13:20Z");

    calls(&fake);
    events.record(event(
        "web",
        "h1",
        "BackOff",
        "Back-off restarting failed container",
        40,
    ));
    s.step(t0 + Duration::from_secs(1));
    let c = calls(&fake);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(
        c[0].starts_with("PATCH /api/v1/namespaces/default/events/web-node1."),
        "{c:?}"
    );
    let e = posted(&fake);
    assert_eq!(
        (e[0]["count"].clone(), e[0]["lastTimestamp"].clone()),
        (4.into(), "2023-11-14T22:14:00Z".into())
    );
}

#[test]
fn events_of_an_outage_are_kept_on_disk_and_posted_in_order_after_it() {
    let dir = std::env::temp_dir().join(format!("stl-events-outage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = crate::events::buffer_path(&dir);
    let limits = Limits {
        events: 10,
        bytes: 1 << 20,
    };
    let events = Arc::new(Recorder::new(limits, true, "node1", Some(file.clone())));
    let fake = Fake::new();
    let (mut s, _board, _) = syncer_using(&fake, &[], events.clone());
    let t0 = Instant::now();
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0);
    fake.lock().down = true;
    s.step(t0 + Duration::from_secs(10));
    for i in 0..14 {
        events.record(event(
            "web",
            "h1",
            &format!("R{i}"),
            &format!("probe {i}"),
            100 + i,
        ));
    }
    s.step(t0 + Duration::from_secs(12));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&file).expect("kept on disk")).unwrap();
    assert_eq!(saved["entries"].as_array().unwrap().len(), 10, "{saved}");
    assert!(posted(&fake).is_empty());

    fake.lock().down = false;
    let mut now = t0 + Duration::from_secs(12);
    for _ in 0..40 {
        now += Duration::from_secs(1);
        s.step(now);
    }
    let mut e = posted(&fake);
    e.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    let messages: Vec<&str> = e.iter().map(|e| e["message"].as_str().unwrap()).collect();
    // The oldest went (counted on the Node); the rest in the order they happened, with
    // their own times.
    assert_eq!(messages.len(), 10, "{messages:?}");
    assert_eq!(&messages[..3], ["probe 5", "probe 6", "probe 7"]);
    assert_eq!(messages[8], "probe 13");
    assert_eq!(e[0]["firstTimestamp"], "2023-11-14T22:15:05Z");
    let notice = e.last().unwrap();
    assert_eq!(notice["reason"], "EventsDropped");
    assert_eq!(notice["involvedObject"]["kind"], "Node");
    assert!(
        notice["message"]
            .as_str()
            .unwrap()
            .starts_with("5 events were dropped"),
        "{notice}"
    );
    assert!(!file.exists(), "removed once everything is posted");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = SystemTime::now();
}
