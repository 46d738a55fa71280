//! The sync against the in-memory fake API: registration, the mirror rules, refusals,
//! outages, all driven step by step with an explicit `now`.

use super::fake::Fake;
use super::node::HostFacts;
use super::sync::{Settings, Syncer, Timing};
use crate::events::Recorder;
use crate::status::{MirrorState, StatusBoard};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn pod(ns: &str, name: &str, hash: &str, restarts: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-node1"), "namespace": ns, "uid": hash,
            "annotations": {"kubernetes.io/config.hash": hash, "kubernetes.io/config.source": "file"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "now"}],
            "containerStatuses": [{"name": "main", "restartCount": restarts, "state": {"running": {}}}]},
    })
}

pub(super) fn syncer(fake: &Fake, labels: &[(&str, &str)]) -> (Syncer<Fake>, Arc<StatusBoard>) {
    let (s, board, _) = syncer_events(fake, labels);
    (s, board)
}

pub(super) fn syncer_events(
    fake: &Fake,
    labels: &[(&str, &str)],
) -> (Syncer<Fake>, Arc<StatusBoard>, Arc<Recorder>) {
    let events = Arc::new(Recorder::new(Default::default(), true, "node1", None));
    syncer_using(fake, labels, events)
}

pub(super) fn syncer_using(
    fake: &Fake,
    labels: &[(&str, &str)],
    events: Arc<Recorder>,
) -> (Syncer<Fake>, Arc<StatusBoard>, Arc<Recorder>) {
    let board = Arc::new(StatusBoard::default());
    let settings = Settings {
        node: "node1".into(),
        node_labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        system_reserved: BTreeMap::new(),
        server: "https://fake".into(),
        runtime_version: "crun://1.8".into(),
        kubelet_port: Some(10250),
        node_ip: None,
    };
    let facts = HostFacts {
        arch: "amd64".into(),
        cpus: 2,
        memory_kib: 1 << 20,
        ..Default::default()
    };
    (
        Syncer::new(
            fake.clone(),
            settings,
            Timing::default(),
            board.clone(),
            facts,
            events.clone(),
        ),
        board,
        events,
    )
}

pub(super) fn publish(s: &mut Syncer<Fake>, pods: Vec<Value>) {
    s.version += 1;
    s.pods = pods;
}

pub(super) fn calls(fake: &Fake) -> Vec<String> {
    std::mem::take(&mut fake.lock().calls)
}

pub(super) fn mirror(fake: &Fake, ns: &str, name: &str) -> Option<Value> {
    fake.lock()
        .pods
        .get(&(ns.to_string(), format!("{name}-node1")))
        .cloned()
}

pub(super) fn state(board: &StatusBoard, uid: &str) -> Option<MirrorState> {
    board.mirrors().get(uid).cloned()
}

#[test]
fn registers_the_node_and_lease_then_mirrors_pods_quietly() {
    let fake = Fake::new();
    let (mut s, board) = syncer(&fake, &[("example.com/site", "berlin")]);
    let t0 = Instant::now();
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0);
    let node = fake.lock().nodes["node1"].clone();
    assert_eq!(node["metadata"]["labels"]["example.com/site"], "berlin");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/arch"], "amd64");
    assert_eq!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"],
        "crun://1.8"
    );
    let lease = fake.lock().leases["node1"].clone();
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let m = mirror(&fake, "default", "web").unwrap();
    assert_eq!(
        m["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        "h1"
    );
    assert_eq!(
        m["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    assert_eq!(m["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(state(&board, "h1"), Some(MirrorState::Synced));

    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );

    // Steady state: nothing but the Lease (no list: the watch keeps the picture current).
    calls(&fake);
    s.step(t0 + Duration::from_secs(1));
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0 + Duration::from_secs(2));
    assert_eq!(calls(&fake), Vec::<String>::new());
    s.step(t0 + Duration::from_secs(10));
    let c = calls(&fake);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0]
        .starts_with("PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node1"));

    // A restart is written at once.
    publish(&mut s, vec![pod("default", "web", "h1", 1)]);
    s.step(t0 + Duration::from_secs(11));
    assert_eq!(
        calls(&fake),
        vec!["PATCH /api/v1/namespaces/default/pods/web-node1/status"]
    );
    assert_eq!(
        mirror(&fake, "default", "web").unwrap()["status"]["containerStatuses"][0]["restartCount"],
        1
    );
}

#[test]
fn replaces_recreates_and_deletes_orphans() {
    let fake = Fake::new();
    let (mut s, board) = syncer(&fake, &[]);
    let t0 = Instant::now();
    // Nothing is deleted before the agent has published: a stale mirror survives the first
    // connect, then goes as an orphan.
    fake.lock()
        .pods
        .insert(("default".into(), "old-node1".into()), {
            let mut p = pod("default", "old", "h0", 0);
            p["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("h0");
            p
        });
    s.step(t0);
    assert!(mirror(&fake, "default", "old").is_some());
    publish(&mut s, vec![pod("default", "web", "h1", 0)]);
    s.step(t0);
    assert!(mirror(&fake, "default", "old").is_none());
    let first = mirror(&fake, "default", "web").unwrap()["metadata"]["uid"].clone();

    // An admin's graceful delete leaves it Terminating: replaced at the next list.
    fake.admin_delete("default", "web-node1");
    s.step(t0 + Duration::from_secs(10));
    let m = mirror(&fake, "default", "web").unwrap();
    assert_ne!(m["metadata"]["uid"], first);
    assert!(m["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        m["status"]["phase"], "Running",
        "status written to the new one"
    );

    // The manifest changed: new hash, new mirror; the board follows the new static UID.
    publish(&mut s, vec![pod("default", "web", "h2", 0)]);
    s.step(t0 + Duration::from_secs(11));
    let c = calls(&fake);
    assert!(
        c.iter()
            .any(|c| c.starts_with("DELETE /api/v1/namespaces/default/pods/web-node1")),
        "{c:?}"
    );
    assert_eq!(
        mirror(&fake, "default", "web").unwrap()["metadata"]["annotations"]
            ["kubernetes.io/config.mirror"],
        "h2"
    );
    assert_eq!(state(&board, "h2"), Some(MirrorState::Synced));
    assert_eq!(state(&board, "h1"), None);

    // An existing mirror with the same hash is taken as it is (AlreadyExists = success).
    s.seen.clear();
    calls(&fake);
    s.step(t0 + Duration::from_secs(12));
    let c = calls(&fake);
    assert!(!c.iter().any(|c| c.starts_with("DELETE")), "{c:?}");
    assert_eq!(state(&board, "h2"), Some(MirrorState::Synced));
}

#[test]
fn a_refused_mirror_is_reported_and_retried_with_backoff() {
    let fake = Fake::new();
    fake.lock().forbidden_label_prefix = Some("node-role.kubernetes.io/".into());
    let (mut s, board) = syncer(
        &fake,
        &[("node-role.kubernetes.io/edge", ""), ("example.com/x", "y")],
    );
    let t0 = Instant::now();
    publish(&mut s, vec![pod("edge-apps", "web", "h1", 0)]);
    s.step(t0);
    // The Node exists anyway, without the refused labels.
    let labels = fake.lock().nodes["node1"]["metadata"]["labels"].clone();
    assert_eq!(labels["kubernetes.io/hostname"], "node1");
    assert!(labels.get("example.com/x").is_none());
    assert_eq!(
        state(&board, "h1"),
        Some(MirrorState::Refused(
            "namespaces \"edge-apps\" not found".into()
        ))
    );

    let posts = |c: &[String]| {
        c.iter()
            .filter(|c| c.starts_with("POST /api/v1/namespaces/edge-apps/pods"))
            .count()
    };
    calls(&fake);
    for i in 1..=9 {
        publish(&mut s, vec![pod("edge-apps", "web", "h1", 0)]);
        s.step(t0 + Duration::from_millis(100 * i));
    }
    assert_eq!(posts(&calls(&fake)), 0, "no retry before the backoff");
    s.step(t0 + Duration::from_secs(3));
    assert_eq!(posts(&calls(&fake)), 1);
    fake.lock().namespaces.insert("edge-apps".into());
    s.step(t0 + Duration::from_secs(40));
    assert!(mirror(&fake, "edge-apps", "web").is_some());
    assert_eq!(state(&board, "h1"), Some(MirrorState::Synced));
}

#[test]
fn an_outage_backs_off_keeps_nothing_and_resyncs() {
    let fake = Fake::new();
    let (mut s, board) = syncer(&fake, &[]);
    let t0 = Instant::now();
    publish(
        &mut s,
        vec![
            pod("default", "keep", "h1", 0),
            pod("default", "old", "h2", 0),
        ],
    );
    s.step(t0);
    fake.lock().down = true;
    s.step(t0 + Duration::from_secs(10)); // the lease renewal fails
    assert!(
        matches!(state(&board, "h1"), Some(MirrorState::Pending(m)) if m.contains("unreachable"))
    );
    assert!(s.seen.is_empty(), "nothing listed is kept while offline");
    // Retries back off up to the cap (10 s), with jitter.
    let mut now = t0 + Duration::from_secs(10);
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let super::sync::Link::Down { retry_at, .. } = &s.link else {
            panic!("down")
        };
        gaps.push(retry_at.duration_since(now));
        now = *retry_at;
        s.step(now);
    }
    assert!(
        gaps[0] <= Duration::from_secs(1) && gaps[0] >= Duration::from_millis(500),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_secs(10)),
        "{gaps:?}"
    );
    assert!(gaps[7] >= Duration::from_secs(5), "{gaps:?}");
    // Meanwhile a pod went and one came; a restart happened.
    publish(
        &mut s,
        vec![
            pod("default", "keep", "h1", 3),
            pod("default", "new", "h3", 0),
        ],
    );
    s.step(now);
    fake.lock().down = false;
    let super::sync::Link::Down { retry_at, .. } = &s.link else {
        panic!("down")
    };
    let at = *retry_at;
    s.step(at);
    assert!(mirror(&fake, "default", "old").is_none());
    assert!(mirror(&fake, "default", "new").is_some());
    assert_eq!(
        mirror(&fake, "default", "keep").unwrap()["status"]["containerStatuses"][0]["restartCount"],
        3
    );
    for uid in ["h1", "h3"] {
        assert_eq!(state(&board, uid), Some(MirrorState::Synced));
    }
    assert_eq!(state(&board, "h2"), None);
}

#[test]
fn one_log_line_per_outage_whatever_the_error_text() {
    use super::sync::{announce, LinkError};
    let refused = LinkError::Unreachable("Connection refused".into());
    let timeout = LinkError::Unreachable("timeout: connect".into());
    assert!(announce(None, &refused));
    assert!(announce(Some(&LinkError::NotYet), &refused));
    assert!(!announce(Some(&refused), &timeout));
    assert!(!announce(Some(&refused), &refused));
    let unauthorized = LinkError::Unauthorized {
        call: "GET /api".into(),
        message: "no".into(),
    };
    assert!(announce(Some(&timeout), &unauthorized));
}
