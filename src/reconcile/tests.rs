use super::*;
use crate::manifest::{self, Source};
use crate::runtime::podsetup::Sandbox;

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
    st.on_setup(Ok(Sandbox::default()), s(0));
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
    st.on_starting(0);
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
    assert!(st.containers[0].running.is_some());
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
    assert_eq!(status::phase(&st), "Succeeded");
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
    assert_eq!(status::phase(&st), "Failed");
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
    st.containers[0].stopping = true;
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
    st.on_setup(Ok(Sandbox::default()), s(1));
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

/// A fake runtime: it executes a plan's actions at once, records them, and makes the
/// container at `crash` exit (code 1) one second after every start.
struct FakeRuntime {
    calls: Vec<(u64, Action)>,
    crash: usize,
    pending_exits: Vec<(Tick, usize, u32)>,
}

impl FakeRuntime {
    fn run(&mut self, st: &mut PodState, now: Tick) {
        let p = plan(st, now);
        for action in p.actions {
            self.calls.push((now.as_secs(), action.clone()));
            match action {
                Action::SetupSandbox => st.on_setup(Ok(Sandbox::default()), now),
                Action::Start { index, attempt } => {
                    st.on_started(index, running(attempt, now), now);
                    if index == self.crash || st.containers[index].init {
                        self.pending_exits.push((now + s(1), index, attempt));
                    }
                }
                Action::Stop { index, .. } => st.containers[index].stopping = true,
                Action::Probe { .. } | Action::Teardown => {}
            }
        }
    }

    /// Delivers the exits due by `now`.
    fn deliver(&mut self, st: &mut PodState, now: Tick) {
        let due: Vec<_> = self
            .pending_exits
            .iter()
            .filter(|(t, _, _)| *t <= now)
            .cloned()
            .collect();
        self.pending_exits.retain(|(t, _, _)| *t > now);
        for (_, index, attempt) in due {
            let mut rec = exit(attempt, if st.containers[index].init { 0 } else { 1 });
            rec.container = st.containers[index].name.clone();
            st.on_exit(index, &rec, now);
        }
    }
}

#[test]
fn fake_runtime_and_manual_clock_drive_a_crash_loop() {
    let extra = "  initContainers:\n  - {name: init, image: busybox, command: ['true']}\n";
    let mut st = pod(extra);
    std::sync::Arc::make_mut(&mut st.pod)
        .pod
        .spec
        .containers
        .push(crate::manifest::pod::Container {
            name: "steady".into(),
            image: "busybox".into(),
            ..Default::default()
        });
    st.containers.push(ContainerState {
        name: "steady".into(),
        ..Default::default()
    });
    let mut rt = FakeRuntime {
        calls: Vec::new(),
        crash: 1,
        pending_exits: Vec::new(),
    };
    // The clock only moves when the test says so: to the next exit or the next wake-up.
    let mut now = s(0);
    for _ in 0..100 {
        rt.deliver(&mut st, now);
        let before = rt.calls.len();
        rt.run(&mut st, now);
        if rt.calls.len() > before {
            continue; // what was done may allow more at the same instant
        }
        let next_exit = rt.pending_exits.iter().map(|e| e.0).min();
        let next_wake = plan(&st, now).wake;
        match [next_exit, next_wake].into_iter().flatten().min() {
            Some(t) if t <= s(200) => now = t.max(now),
            _ => break,
        }
    }
    let starts: Vec<(u64, usize, u32)> = rt
        .calls
        .iter()
        .filter_map(|(t, a)| match a {
            Action::Start { index, attempt } => Some((*t, *index, *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(rt.calls[0], (0, Action::SetupSandbox));
    assert_eq!(starts[0], (0, 0, 0), "the init container first");
    assert!(
        starts.contains(&(1, 2, 0)),
        "the steady container after init: {starts:?}"
    );
    let crash_starts: Vec<u64> = starts.iter().filter(|s| s.1 == 1).map(|s| s.0).collect();
    // Each run lasts 1 s; the waits after each exit are 0, 10, 20, 40, 80 s.
    assert_eq!(crash_starts, vec![1, 2, 13, 34, 75, 156], "{starts:?}");
    assert_eq!(st.containers[1].restart_count, 5);
    assert_eq!(
        starts.iter().filter(|s| s.1 == 2).count(),
        1,
        "the steady container never restarts"
    );
    assert_eq!(status::phase(&st), "Running");
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
    st.on_setup(Ok(Sandbox::default()), s(100));
    assert_eq!(
        plan(&st, s(100)).actions,
        vec![Action::Probe {
            index: 0,
            kind: ProbeKind::Readiness
        }],
        "the initial delay has long passed"
    );
}
