//! Pod spec fields through the core: `activeDeadlineSeconds`, `postStart` hooks, native
//! sidecars; and the board rebuilt only when something visible changed.

use super::*;

/// `activeDeadlineSeconds`: when it runs out the containers stop, none starts again (not
/// even under `restartPolicy: Always`), and the pod is Failed with the kubelet's reason,
/// message and Event.
#[test]
fn an_active_deadline_fails_the_pod_for_good() {
    let mut sim = Sim::new();
    let body =
        yaml("job", "sleep, '1000'", "").replace("spec:\n", "spec:\n  activeDeadlineSeconds: 30\n");
    sim.write("job.yaml", &body);
    let id = sim.running_id("job");
    assert_eq!(sim.wake, Some(s(30)), "woken at the deadline, not before");
    sim.run_until(s(29));
    assert_eq!(sim.live(), vec![id.clone()]);
    sim.run_until(s(31));
    assert!(sim.live().is_empty(), "stopped at the deadline");
    assert!(
        sim.reasons().contains(&"DeadlineExceeded"),
        "{:?}",
        sim.reasons()
    );
    let v = sim.status("job");
    assert_eq!(v["status"]["phase"], "Failed");
    assert_eq!(v["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        v["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    sim.run_until(s(600));
    assert!(sim.live().is_empty(), "never started again");
    assert_eq!(
        sim.reasons()
            .iter()
            .filter(|r| **r == "DeadlineExceeded")
            .count(),
        1
    );
}

/// `postStart`: the container after a hooked one starts only once the hook has ended; a
/// failed hook kills its container (the kubelet's Warning, without the hook's output), the
/// next container starts anyway (as the kubelet's start loop goes on), and the restart
/// policy brings the first back, with the hook run again.
#[test]
fn a_post_start_hook_orders_the_starts_and_a_failed_one_kills_its_container() {
    let mut sim = Sim::new();
    sim.rt
        .handler_results
        .borrow_mut()
        .insert("first".into(), [false, true].into());
    let hook = "    lifecycle: {postStart: {exec: {command: [touch, /tmp/hooked]}}}\n";
    let body = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: two, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: first\n    image: busybox:1.36\n    command: [sleep, '1000']\n{hook}  - name: second\n    image: busybox:1.36\n    command: [sleep, '1000']\n"
    );
    // Hold the first hook: the second container waits for it.
    sim.hold = Box::new(|c| matches!(c, Command::PostStart { .. }));
    sim.write("two.yaml", &body);
    let launches = |sim: &Sim| {
        sim.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Launch(_)))
            .count()
    };
    assert_eq!(
        launches(&sim),
        1,
        "only the hooked container: {:?}",
        sim.calls()
    );
    assert_eq!(sim.held.len(), 1);
    let v = sim.status("two");
    assert_eq!(
        v["status"]["containerStatuses"][0]["ready"], false,
        "not ready during its hook"
    );

    // The hook fails: killed, Warning, restarted after its back-off, hook again.
    sim.hold = Box::new(|_| false);
    sim.finish_held(|_| true);
    assert!(
        sim.reasons().contains(&"FailedPostStartHook"),
        "{:?}",
        sim.reasons()
    );
    let warn = sim
        .events
        .iter()
        .find(|e| e.reason == "FailedPostStartHook")
        .unwrap();
    assert_eq!(warn.message, "PostStartHook failed");
    sim.run_until(s(30));
    let p = sim.pod("two");
    assert_eq!(p.containers[0].restart_count, 1);
    assert!(
        p.containers[0].ready && p.containers[1].running().is_some(),
        "{:?}",
        p.containers
    );
    assert_eq!(launches(&sim), 3);
}

fn sidecar_pod(policy: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sc, namespace: default}}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 5\n  initContainers:\n  - name: proxy\n    image: busybox:1.36\n    restartPolicy: Always\n    command: [sleep, '1000']\n  - name: setup\n    image: busybox:1.36\n    command: ['true']\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [sleep, '1000']\n"
    )
}

fn id_of(sim: &Sim, index: usize) -> Option<String> {
    sim.pod("sc").containers[index]
        .running()
        .map(|r| r.id.clone())
}

/// Native sidecars: the sidecar starts first and keeps running; the next init container
/// starts once it has started, the app container once that has succeeded; a sidecar that
/// ends is started again (whatever the pod's policy) without holding the app up; the pod is
/// Ready with it, and a deleted pod stops its sidecar after its app container.
#[test]
fn a_native_sidecar_runs_beside_the_app_and_stops_last() {
    let mut sim = Sim::new();
    sim.write("sc.yaml", &sidecar_pod("Always"));
    let proxy = id_of(&sim, 0).expect("the sidecar runs");
    let setup = id_of(&sim, 1).expect("the next init container started after it");
    assert_eq!(id_of(&sim, 2), None, "the app waits for the init container");
    assert_eq!(
        sim.status("sc")["status"]["conditions"][1]["status"],
        "False"
    );
    sim.exit(&setup, 0);
    let main = id_of(&sim, 2).expect("the app container runs");
    let v = sim.status("sc");
    assert_eq!(v["status"]["phase"], "Running");
    assert_eq!(
        v["status"]["conditions"][1]["status"], "True",
        "Initialized"
    );
    assert_eq!(v["status"]["conditions"][2]["status"], "True", "Ready");
    assert!(v["status"]["initContainerStatuses"][0]["state"]["running"].is_object());

    // The sidecar ends: started again, the app untouched.
    sim.exit(&proxy, 1);
    sim.run_until(s(20));
    let again = id_of(&sim, 0).expect("the sidecar runs again");
    assert_ne!(again, proxy);
    assert_eq!(id_of(&sim, 2), Some(main.clone()));
    assert_eq!(sim.pod("sc").containers[0].restart_count, 1);

    // Deleted: the app container stops first, then the sidecar.
    sim.hold = Box::new(|c| matches!(c, Command::Stop { .. }));
    sim.remove("sc.yaml");
    let stops = |sim: &Sim| -> Vec<usize> {
        sim.held
            .iter()
            .filter_map(|c| match c {
                Command::Stop { index, .. } => Some(*index),
                _ => None,
            })
            .collect()
    };
    assert_eq!(stops(&sim), vec![2], "the app container first");
    sim.finish_held(|_| true);
    assert_eq!(stops(&sim), vec![0], "then the sidecar");
    sim.hold = Box::new(|_| false);
    sim.finish_held(|_| true);
    assert!(sim.live().is_empty());
}

/// With `restartPolicy: Never`, the pod completes when its app container has: the sidecar
/// is stopped, not restarted, and its exit code does not fail the pod.
#[test]
fn a_pod_whose_app_completed_stops_its_sidecar_and_succeeds() {
    let mut sim = Sim::new();
    sim.write("sc.yaml", &sidecar_pod("Never"));
    let setup = id_of(&sim, 1).unwrap();
    sim.exit(&setup, 0);
    let main = id_of(&sim, 2).unwrap();
    sim.exit(&main, 0);
    assert!(
        sim.live().is_empty(),
        "the sidecar was stopped: {:?}",
        sim.live()
    );
    sim.run_until(s(60));
    assert!(sim.live().is_empty(), "and not started again");
    assert_eq!(sim.status("sc")["status"]["phase"], "Succeeded");
}

/// The idle agent's inputs (a timer, a probe answer that changes nothing) need no new board;
/// a probe that changes readiness does.
#[test]
fn only_a_visible_change_rebuilds_the_board() {
    let mut sim = Sim::new();
    let probe = "    readinessProbe:\n      exec: {command: ['true']}\n      periodSeconds: 10\n      failureThreshold: 1\n";
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", probe));
    sim.run_until(s(1));
    assert!(sim.pod("web").containers[0].ready);
    sim.core.take_visible();
    sim.run_until(s(35));
    assert!(
        sim.calls()
            .iter()
            .filter(|c| matches!(c, Call::Handler(_)))
            .count()
            >= 3,
        "probed: {:?}",
        sim.calls()
    );
    assert!(
        !sim.core.take_visible(),
        "three unchanged probes, no new board"
    );
    sim.rt
        .handler_results
        .borrow_mut()
        .insert("main".into(), [false].into());
    sim.run_until(s(45));
    assert!(!sim.pod("web").containers[0].ready);
    assert!(sim.core.take_visible(), "readiness changed");
}
