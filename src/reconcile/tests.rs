use super::*;
use crate::manifest::{self, Source};
use crate::runtime::podsetup::Sandbox;
use crate::runtime::ExitRecord;

fn s(n: u64) -> Tick {
    Duration::from_secs(n)
}

fn pod(extra: &str) -> PodState {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n{extra}  containers:\n  - name: app\n    image: busybox\n    command: [sleep, '1000']\n"
    );
    let sp = manifest::load(yaml.as_bytes(), &Source::File("/m/p.yaml".into()), "n").unwrap();
    PodState::new(sp, "2026-01-01T00:00:00Z".into())
}

fn running(attempt: u32, now: Tick) -> Running {
    Running {
        attempt,
        id: format!("x-app-{attempt}"),
        pid: 100 + attempt as i32,
        monitor_pid: 1,
        started_at: "t".into(),
        since: now,
    }
}

fn exit(attempt: u32, code: i32) -> ExitRecord {
    ExitRecord {
        id: String::new(),
        pod_uid: String::new(),
        container: "app".into(),
        attempt,
        started_at: Some("t0".into()),
        finished_at: "t1".into(),
        exit_code: code,
        signal: None,
        oom_killed: false,
        error: None,
    }
}

fn ready(st: &mut PodState) {
    assert_eq!(plan(st, s(0)).actions, vec![Action::SetupSandbox]);
    st.on_setup(Sandbox::default());
}

fn status_of(st: &PodState, now: Tick) -> serde_json::Value {
    status::pod_json(st, now, "now", None)
}

#[test]
fn starts_once_the_sandbox_is_ready() {
    let mut st = pod("");
    ready(&mut st);
    assert_eq!(
        plan(&st, s(0)).actions,
        vec![Action::Start {
            index: 0,
            attempt: 0
        }]
    );
    st.on_creating(0, 0, s(0));
    assert!(
        plan(&st, s(0)).actions.is_empty(),
        "no second start while one is in flight"
    );
    st.on_started(0, running(0, s(0)), s(0));
    assert!(plan(&st, s(1)).actions.is_empty());
    let v = status_of(&st, s(1));
    assert_eq!(v["status"]["phase"], "Running");
    assert_eq!(v["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        v["status"]["containerStatuses"][0]["state"]["running"]["startedAt"],
        "t"
    );
}

#[test]
fn crash_loop_follows_the_kubelet_backoff() {
    let mut st = pod("");
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    st.on_exit(0, &exit(0, 1), s(5));
    assert_eq!(
        plan(&st, s(5)).actions,
        vec![Action::Start {
            index: 0,
            attempt: 1
        }],
        "first restart is immediate"
    );
    st.on_started(0, running(1, s(5)), s(5));
    assert_eq!(st.containers[0].restart_count, 1);
    st.on_exit(0, &exit(1, 1), s(6));
    let p = plan(&st, s(6));
    assert!(p.actions.is_empty());
    assert_eq!(p.wake, Some(s(16)), "then 10 s");
    let v = status_of(&st, s(7));
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(
        plan(&st, s(16)).actions,
        vec![Action::Start {
            index: 0,
            attempt: 2
        }]
    );
    st.on_started(0, running(2, s(16)), s(16));
    st.on_exit(0, &exit(2, 2), s(17));
    assert_eq!(plan(&st, s(17)).wake, Some(s(37)), "then 20 s");
}

#[test]
fn stale_exit_records_are_ignored() {
    let mut st = pod("");
    ready(&mut st);
    st.on_started(0, running(3, s(0)), s(0));
    st.on_exit(0, &exit(2, 1), s(1));
    assert!(st.containers[0].running().is_some());
}

#[test]
fn on_failure_policy_and_success() {
    let mut st = pod("  restartPolicy: OnFailure\n");
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    st.on_exit(0, &exit(0, 0), s(1));
    assert!(
        plan(&st, s(100)).actions.is_empty(),
        "exit 0 is not restarted under OnFailure"
    );
    assert_eq!(status::phase(&st).as_str(), "Succeeded");
    let v = status_of(&st, s(2));
    assert_eq!(
        v["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[test]
fn never_policy_failure_is_final() {
    let mut st = pod("  restartPolicy: Never\n");
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    st.on_exit(0, &exit(0, 3), s(1));
    assert!(plan(&st, s(100)).actions.is_empty());
    assert_eq!(status::phase(&st).as_str(), "Failed");
}

#[test]
fn init_containers_run_in_order_before_apps() {
    let extra = "  initContainers:\n  - {name: i1, image: busybox, command: ['true']}\n  - {name: i2, image: busybox, command: ['true']}\n";
    let mut st = pod(extra);
    ready(&mut st);
    assert_eq!(
        plan(&st, s(0)).actions,
        vec![Action::Start {
            index: 0,
            attempt: 0
        }]
    );
    st.on_started(0, running(0, s(0)), s(0));
    assert!(plan(&st, s(0)).actions.is_empty());
    assert_eq!(
        status_of(&st, s(0))["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let mut e = exit(0, 0);
    e.container = "i1".into();
    st.on_exit(0, &e, s(1));
    assert_eq!(
        plan(&st, s(1)).actions,
        vec![Action::Start {
            index: 1,
            attempt: 0
        }]
    );
    st.on_started(1, running(0, s(1)), s(1));
    st.on_exit(1, &exit(0, 1), s(2));
    assert_eq!(
        plan(&st, s(2)).actions,
        vec![Action::Start {
            index: 1,
            attempt: 1
        }],
        "a failed init container is retried"
    );
    st.on_started(1, running(1, s(2)), s(2));
    st.on_exit(1, &exit(1, 0), s(3));
    assert_eq!(
        plan(&st, s(3)).actions,
        vec![Action::Start {
            index: 2,
            attempt: 0
        }]
    );
}

#[test]
fn liveness_failures_stop_the_container() {
    let extra = "";
    let mut st = pod(extra);
    std::sync::Arc::make_mut(&mut st.pod).pod.spec.containers[0].liveness_probe =
        Some(crate::manifest::pod::Probe {
            handler: crate::manifest::pod::Handler {
                exec: Some(crate::manifest::pod::ExecAction {
                    command: vec!["false".into()],
                }),
                ..Default::default()
            },
            initial_delay_seconds: Some(5),
            failure_threshold: Some(2),
            ..Default::default()
        });
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    assert_eq!(plan(&st, s(1)).wake, Some(s(5)));
    assert_eq!(
        plan(&st, s(5)).actions,
        vec![Action::Probe {
            index: 0,
            kind: ProbeKind::Liveness
        }]
    );
    st.on_probe_started(0, ProbeKind::Liveness);
    assert!(plan(&st, s(5)).actions.is_empty());
    assert_eq!(
        st.on_probe(0, ProbeKind::Liveness, false, "exit 1", s(5)),
        None
    );
    assert_eq!(plan(&st, s(6)).wake, Some(s(15)));
    assert!(st
        .on_probe(0, ProbeKind::Liveness, false, "exit 1", s(15))
        .is_some());
    assert_eq!(
        plan(&st, s(15)).actions,
        vec![Action::Stop {
            index: 0,
            grace: s(30)
        }]
    );
}

#[test]
fn readiness_drives_ready() {
    let mut st = pod("");
    std::sync::Arc::make_mut(&mut st.pod).pod.spec.containers[0].readiness_probe =
        Some(crate::manifest::pod::Probe {
            handler: crate::manifest::pod::Handler {
                exec: Some(crate::manifest::pod::ExecAction {
                    command: vec!["true".into()],
                }),
                ..Default::default()
            },
            ..Default::default()
        });
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    assert_eq!(
        status_of(&st, s(0))["status"]["containerStatuses"][0]["ready"],
        false
    );
    st.on_probe(0, ProbeKind::Readiness, true, "", s(0));
    let v = status_of(&st, s(0));
    assert_eq!(v["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(v["status"]["conditions"][2]["type"], "Ready");
    assert_eq!(v["status"]["conditions"][2]["status"], "True");
}

#[test]
fn termination_stops_then_tears_down() {
    let mut st = pod("  terminationGracePeriodSeconds: 3\n");
    ready(&mut st);
    st.on_started(0, running(0, s(0)), s(0));
    st.terminating = true;
    assert_eq!(
        plan(&st, s(1)).actions,
        vec![Action::Stop {
            index: 0,
            grace: s(3)
        }]
    );
    st.on_stopping(0);
    assert!(plan(&st, s(1)).actions.is_empty());
    st.on_exit(0, &exit(0, 143), s(2));
    assert_eq!(plan(&st, s(2)).actions, vec![Action::Teardown]);
}

/// A manifest rewritten while its sandbox is being set up: the teardown waits for the setup
/// job, so nothing that job mounts is left behind.
#[test]
fn teardown_waits_for_a_sandbox_setup_in_flight() {
    let mut st = pod("");
    assert_eq!(plan(&st, s(0)).actions, vec![Action::SetupSandbox]);
    st.sandbox = SandboxState::SettingUp;
    st.terminating = true;
    assert!(plan(&st, s(0)).actions.is_empty());
    st.on_setup(Sandbox::default());
    assert_eq!(plan(&st, s(1)).actions, vec![Action::Teardown]);
}

#[test]
fn start_failures_are_reported_and_backed_off() {
    let mut st = pod("");
    ready(&mut st);
    st.on_start_failed(
        0,
        StartFailure {
            reason: "ErrImageNeverPull".into(),
            message: "image busybox is not in the local store".into(),
            ran: false,
        },
        s(0),
        "w",
    );
    let v = status_of(&st, s(0));
    assert_eq!(
        v["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ErrImageNeverPull"
    );
    assert_eq!(v["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(
        plan(&st, s(0)).actions,
        vec![Action::Start {
            index: 0,
            attempt: 0
        }]
    );
    st.on_start_failed(
        0,
        StartFailure {
            reason: "ErrImageNeverPull".into(),
            message: "m".into(),
            ran: false,
        },
        s(1),
        "w",
    );
    assert_eq!(plan(&st, s(1)).wake, Some(s(11)));
}

#[test]
fn adopted_containers_are_probed_again() {
    let mut st = pod("");
    std::sync::Arc::make_mut(&mut st.pod).pod.spec.containers[0].readiness_probe =
        Some(crate::manifest::pod::Probe {
            handler: crate::manifest::pod::Handler {
                exec: Some(crate::manifest::pod::ExecAction {
                    command: vec!["true".into()],
                }),
                ..Default::default()
            },
            initial_delay_seconds: Some(30),
            ..Default::default()
        });
    st.on_adopted(0, running(0, s(0)), s(100));
    assert_eq!(st.containers[0].restart_count, 0);
    assert!(!st.containers[0].ready, "ready once the probe says so");
    st.on_setup(Sandbox::default());
    assert_eq!(
        plan(&st, s(100)).actions,
        vec![Action::Probe {
            index: 0,
            kind: ProbeKind::Readiness
        }],
        "the initial delay has long passed"
    );
}
