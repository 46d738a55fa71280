//! Condition transition times: Ready and ContainersReady change their
//! `lastTransitionTime` when their value changes, not at every publish.

use super::super::{PodState, Running};
use crate::manifest::{self, Source};
use crate::runtime::podsetup::Sandbox;
use crate::runtime::ExitRecord;
use std::time::Duration;

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn pod() -> PodState {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '1000']\n";
    let sp = manifest::load(yaml.as_bytes(), &Source::File("/m/p.yaml".into()), "n").unwrap();
    let mut st = PodState::new(sp, "2026-01-01T00:00:00Z".into());
    st.on_setup(Sandbox::default());
    st
}

fn running(started_at: &str, now: Duration) -> Running {
    Running {
        attempt: 0,
        id: "x-app-0".into(),
        pid: 100,
        monitor_pid: 1,
        started_at: started_at.into(),
        since: now,
    }
}

fn exit(code: i32) -> ExitRecord {
    ExitRecord {
        id: String::new(),
        pod_uid: String::new(),
        container: "app".into(),
        attempt: 0,
        started_at: Some("t0".into()),
        finished_at: "t1".into(),
        exit_code: code,
        signal: None,
        oom_killed: false,
        error: None,
    }
}

fn ready_condition(st: &PodState, wall: &str) -> (String, String) {
    let v = super::pod_json(st, s(0), wall, None);
    let c = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    let cr = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ContainersReady")
        .unwrap()
        .clone();
    assert_eq!(c["lastTransitionTime"], cr["lastTransitionTime"]);
    (
        c["status"].as_str().unwrap().into(),
        c["lastTransitionTime"].as_str().unwrap().into(),
    )
}

#[test]
fn ready_transition_time_moves_only_when_ready_changes() {
    let mut st = pod();
    st.note_ready("t1");
    assert_eq!(ready_condition(&st, "t1"), ("False".into(), "t1".into()));
    st.on_started(0, running("t", s(1)), s(1));
    st.note_ready("t2");
    assert_eq!(ready_condition(&st, "t2"), ("True".into(), "t2".into()));
    // Publishing again later changes nothing: the condition did not change.
    st.note_ready("t3");
    assert_eq!(ready_condition(&st, "t3"), ("True".into(), "t2".into()));
    st.on_exit(0, &exit(1), s(4));
    st.note_ready("t4");
    assert_eq!(ready_condition(&st, "t5"), ("False".into(), "t4".into()));
}

#[test]
fn adopted_ready_pod_dates_its_transition_from_its_container_start() {
    let mut st = pod();
    st.on_adopted(0, running("2026-01-01T00:00:05Z", s(0)), s(100));
    st.note_ready("2026-01-02T00:00:00Z");
    assert_eq!(
        ready_condition(&st, "later"),
        ("True".into(), "2026-01-01T00:00:05Z".into())
    );
}
