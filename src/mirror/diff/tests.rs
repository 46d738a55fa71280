use super::*;
use std::time::Duration;

fn pod(name: &str, hash: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-node1"), "namespace": "default", "uid": hash,
            "labels": {"app": name},
            "annotations": {ANN_HASH: hash, "kubernetes.io/config.source": "file", "kubernetes.io/config.seen": "t"},
        },
        "spec": {"nodeName": "node1", "containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "t1", "lastProbeTime": null},
        ], "containerStatuses": [{"name": "main", "restartCount": 0}]},
    })
}

fn key(name: &str) -> Key {
    ("default".to_string(), format!("{name}-node1"))
}

fn seen_of(uid: &str, hash: &str, deleting: bool) -> Seen {
    Seen {
        uid: uid.into(),
        hash: hash.into(),
        deleting,
    }
}

fn no_hold(_: &Key, _: Instant) -> bool {
    false
}

#[test]
fn wants_skip_pods_being_stopped() {
    let mut stopping = pod("old", "h0", "Running");
    stopping["metadata"]["deletionTimestamp"] = json!("t");
    let w = wants(&[pod("web", "h1", "Running"), stopping]);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].key, key("web"));
    assert_eq!((w[0].uid.as_str(), w[0].hash.as_str()), ("h1", "h1"));
}

#[test]
fn mirror_body_has_metadata_spec_annotation_and_one_owner() {
    let w = &wants(&[pod("web", "h1", "Running")])[0];
    let b = mirror_body(w, "node1", "node-uid");
    assert_eq!(b["metadata"]["name"], "web-node1");
    assert_eq!(b["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(b["metadata"]["annotations"][ANN_MIRROR], "h1");
    assert_eq!(
        b["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(
        b["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node1", "uid": "node-uid", "controller": true}])
    );
    for absent in ["uid", "resourceVersion", "deletionTimestamp"] {
        assert!(b["metadata"].get(absent).is_none(), "{absent}");
    }
    assert!(b.get("status").is_none());
    assert_eq!(b["spec"]["nodeName"], "node1");
}

#[test]
fn plan_creates_replaces_deletes_and_patches() {
    let now = Instant::now();
    let w = wants(&[
        pod("new", "h1", "Running"),
        pod("edited", "h2", "Running"),
        pod("gone-admin", "h3", "Running"),
        pod("same", "h4", "Running"),
    ]);
    let seen = BTreeMap::from([
        (key("edited"), seen_of("m2", "h-old", false)),
        (key("gone-admin"), seen_of("m3", "h3", true)),
        (key("same"), seen_of("m4", "h4", false)),
        (key("orphan"), seen_of("m5", "h5", false)),
    ]);
    let ops = plan(&w, &seen, &BTreeMap::new(), &no_hold, now);
    assert_eq!(
        ops,
        vec![
            Op::Delete {
                key: key("orphan"),
                uid: "m5".into(),
                why: Why::Orphan
            },
            Op::Create(key("new")),
            Op::Delete {
                key: key("edited"),
                uid: "m2".into(),
                why: Why::Changed
            },
            Op::Create(key("edited")),
            Op::Delete {
                key: key("gone-admin"),
                uid: "m3".into(),
                why: Why::Deleting
            },
            Op::Create(key("gone-admin")),
            Op::PatchStatus(key("same")),
        ]
    );
    // Held keys wait for their retry time.
    let held = |k: &Key, at: Instant| k == &key("new") && at < now + Duration::from_secs(5);
    let ops = plan(&w[..1], &BTreeMap::new(), &BTreeMap::new(), &held, now);
    assert!(ops.is_empty());
    let ops = plan(
        &w[..1],
        &BTreeMap::new(),
        &BTreeMap::new(),
        &held,
        now + Duration::from_secs(6),
    );
    assert_eq!(ops, vec![Op::Create(key("new"))]);
}

#[test]
fn status_is_patched_on_change_only() {
    let now = Instant::now();
    let w = wants(&[pod("same", "h4", "Running")]);
    let seen = BTreeMap::from([(key("same"), seen_of("m4", "h4", false))]);
    let written = |status: &Value, uid: &str| {
        BTreeMap::from([(
            key("same"),
            Written {
                mirror_uid: uid.into(),
                status: status.clone(),
            },
        )])
    };
    // The same status with other condition times: nothing to do.
    let mut old = w[0].pod["status"].clone();
    old["conditions"][0]["lastTransitionTime"] = json!("t0");
    assert!(plan(&w, &seen, &written(&old, "m4"), &no_hold, now).is_empty());
    // Written to an earlier mirror (recreated since): write again.
    assert_eq!(
        plan(&w, &seen, &written(&old, "m-older"), &no_hold, now),
        vec![Op::PatchStatus(key("same"))]
    );
    // A restart: write.
    old["containerStatuses"][0]["restartCount"] = json!(1);
    assert_eq!(
        plan(&w, &seen, &written(&old, "m4"), &no_hold, now),
        vec![Op::PatchStatus(key("same"))]
    );
}

#[test]
fn status_keeps_transition_times_and_clears_stale_fields() {
    let w = &wants(&[pod("web", "h1", "Running")])[0];
    let last =
        json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t0"}]});
    let s = status_to_write(w, Some(&last));
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"], "t0",
        "unchanged condition keeps its time"
    );
    let flipped =
        json!({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "t0"}]});
    assert_eq!(
        status_to_write(w, Some(&flipped))["conditions"][0]["lastTransitionTime"],
        "t1"
    );
    let p = status_patch(&s, "m1");
    assert_eq!(p["metadata"]["uid"], "m1", "the UID is the precondition");
    assert_eq!(p["status"]["phase"], "Running");
    assert!(
        p["status"]["podIP"].is_null() && p["status"].get("podIP").is_some(),
        "stale pod IP removed"
    );
}

#[test]
fn seen_reads_only_mirror_pods() {
    let mut m = pod("web", "h1", "Running");
    assert!(
        seen(&m).is_none(),
        "a pod without config.mirror is not ours"
    );
    m["metadata"]["annotations"][ANN_MIRROR] = json!("h1");
    m["metadata"]["uid"] = json!("m1");
    m["metadata"]["deletionTimestamp"] = json!("t");
    assert_eq!(seen(&m), Some((key("web"), seen_of("m1", "h1", true))));
}
