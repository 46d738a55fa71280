//! A pod's life through the core: added, edited, edited into something invalid, deleted,
//! crash-looping, failing its liveness probe, losing its sandbox.

use super::*;
use crate::runtime::StartError;

#[test]
fn an_added_manifest_runs_its_pod() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let uid = sim.pod("web").uid().to_string();
    let id = sim.running_id("web");
    assert_eq!(
        sim.calls(),
        vec![
            Call::Setup(uid.clone()),
            Call::Create(id.clone()),
            Call::Launch(id.clone()),
            Call::Save(uid, "main".into()),
        ]
    );
    assert_eq!(sim.reasons(), vec!["Pulled", "Created", "Started"]);
    assert_eq!(
        sim.events[0].message,
        "Container image \"busybox:1.36\" already present on machine"
    );
    assert_eq!(sim.events[2].container.as_deref(), Some("main"));
    let v = sim.status("web");
    assert_eq!(v["status"]["phase"], "Running");
    assert_eq!(v["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        v["status"]["containerStatuses"][0]["containerID"],
        format!("crun://{id}")
    );
    assert!(sim.wake.is_none(), "nothing to wait for: {:?}", sim.wake);
}

#[test]
fn a_missing_image_is_pulled_and_says_so() {
    let mut sim = Sim::new();
    sim.rt
        .missing_images
        .borrow_mut()
        .insert("busybox:1.36".into());
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    assert_eq!(
        sim.events[0].message,
        "Successfully pulled image \"busybox:1.36\""
    );
}

#[test]
fn an_edited_manifest_replaces_the_pod_after_the_old_one_stopped() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let old = sim.running_id("web");
    let old_uid = sim.pod("web").uid().to_string();
    sim.write("web.yaml", &yaml("web", "sleep, '2000'", ""));
    let new = sim.running_id("web");
    assert_ne!(old, new);
    let calls = sim.calls();
    let pos = |c: &Call| calls.iter().position(|x| x == c).unwrap();
    assert!(
        pos(&Call::Stop(old.clone())) < pos(&Call::Create(new.clone())),
        "the successor starts once the old version stopped: {calls:?}"
    );
    assert!(calls.contains(&Call::Teardown(old_uid.clone())));
    assert!(calls.contains(&Call::Release(old)));
    assert!(
        !sim.core.pods().contains_key(&old_uid),
        "the old pod is gone"
    );
    assert_eq!(sim.live(), vec![new]);
    assert!(sim.reasons().contains(&"Killing"));
}

#[test]
fn an_invalid_edit_keeps_the_last_good_version_running() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let id = sim.running_id("web");
    let before = sim.calls().len();
    sim.write(
        "web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {}\n",
    );
    assert_eq!(sim.calls().len(), before, "nothing stopped or started");
    assert_eq!(sim.running_id("web"), id);
    assert_eq!(sim.core.problems().len(), 1);
    let v = sim.status("web");
    let conds = v["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "staticlet.dev/ManifestValid" && c["status"] == "False"));
    // Fixed again: the problem goes, the same pod keeps running.
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    assert!(sim.core.problems().is_empty());
    assert_eq!(sim.running_id("web"), id);
}

#[test]
fn a_deleted_manifest_stops_and_removes_its_pod() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let id = sim.running_id("web");
    let uid = sim.pod("web").uid().to_string();
    sim.remove("web.yaml");
    let calls = sim.calls();
    assert!(calls.ends_with(&[
        Call::Stop(id.clone()),
        Call::Save(uid.clone(), "main".into()),
        Call::Release(id),
        Call::Teardown(uid.clone()),
    ]));
    assert!(sim.core.pods().is_empty());
    assert!(sim.live().is_empty());
    assert_eq!(sim.status("web"), Value::Null);
}

#[test]
fn a_crash_loop_follows_the_kubelet_backoff() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "'false'", ""));
    // Each run lasts 1 s; the waits after each exit are 0, 10, 20, 40, 80 s.
    let mut starts = Vec::new();
    for _ in 0..6 {
        starts.push(sim.tick.as_secs());
        let id = sim.running_id("web");
        sim.tick += s(1);
        sim.exit(&id, 1);
        if let Some(w) = sim.wake {
            sim.run_until(w);
        }
    }
    assert_eq!(starts, vec![0, 1, 12, 33, 74, 155]);
    let c = &sim.pod("web").containers[0];
    assert_eq!(c.restart_count, 6);
    // Right after an exit: waiting in CrashLoopBackOff, last state terminated.
    let id = sim.running_id("web");
    sim.tick += s(1);
    sim.exit(&id, 1);
    let v = sim.status("web");
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(cs["restartCount"], 6);
    assert!(sim.reasons().contains(&"BackOff"));
    let record =
        sim.rt.records.borrow()[&(sim.pod("web").uid().to_string(), "main".into())].clone();
    assert_eq!(
        record.restart_count, 6,
        "the restart count survives the agent"
    );
    assert_eq!(record.backoff_delay_secs, Some(300));
}

#[test]
fn restart_policy_never_leaves_a_failed_pod() {
    let mut sim = Sim::new();
    let body = yaml("job", "'false'", "").replace(
        "  terminationGracePeriodSeconds: 5\n",
        "  terminationGracePeriodSeconds: 5\n  restartPolicy: Never\n",
    );
    sim.write("job.yaml", &body);
    let id = sim.running_id("job");
    sim.exit(&id, 3);
    sim.run_until(s(1000));
    assert_eq!(sim.rt.count(|c| matches!(c, Call::Launch(_))), 1);
    assert_eq!(sim.status("job")["status"]["phase"], "Failed");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let mut sim = Sim::new();
    let probe = "    livenessProbe:\n      exec: {command: ['true']}\n      periodSeconds: 5\n      failureThreshold: 2\n";
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", probe));
    let first = sim.running_id("web");
    sim.rt.probe_answers("main", &[true, false, false]);
    sim.run_until(s(10));
    assert_eq!(sim.running_id("web"), first, "one failure is not enough");
    sim.run_until(s(15));
    let second = sim.running_id("web");
    assert_ne!(second, first, "restarted after two failures");
    assert!(sim.calls().contains(&Call::Stop(first)));
    let unhealthy: Vec<&Event> = sim
        .events
        .iter()
        .filter(|e| e.reason == "Unhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 2);
    assert_eq!(unhealthy[0].message, "Liveness probe failed: HTTP 500");
    assert!(sim.events.iter().any(|e| e.reason == "Killing"
        && e.message == "Container main failed liveness probe, will be restarted"));
    let c = &sim.pod("web").containers[0];
    assert_eq!(c.restart_count, 1);
    assert_eq!(
        c.last.as_ref().and_then(|t| t.message.as_deref()),
        Some("liveness probe failed: HTTP 500")
    );
}

#[test]
fn a_readiness_probe_drives_ready() {
    let mut sim = Sim::new();
    let probe = "    readinessProbe:\n      httpGet: {port: 80}\n      periodSeconds: 5\n";
    sim.rt.probe_answers("main", &[false]);
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", probe));
    assert_eq!(
        sim.status("web")["status"]["containerStatuses"][0]["ready"],
        false
    );
    sim.rt.probe_answers("main", &[true]);
    sim.run_until(s(5));
    assert_eq!(
        sim.status("web")["status"]["containerStatuses"][0]["ready"],
        true
    );
    sim.rt.probe_answers("main", &[false, false, false]);
    sim.run_until(s(15));
    assert_eq!(
        sim.status("web")["status"]["containerStatuses"][0]["ready"],
        true,
        "two failures are not enough"
    );
    sim.run_until(s(20));
    assert_eq!(
        sim.status("web")["status"]["containerStatuses"][0]["ready"],
        false
    );
}

#[test]
fn start_failures_are_shown_and_backed_off() {
    let mut sim = Sim::new();
    for _ in 0..3 {
        sim.rt.fail_create("main", || StartError::NeverPull {
            image: "docker.io/library/busybox:1.36".into(),
        });
    }
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let v = sim.status("web");
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "ErrImageNeverPull");
    assert_eq!(cs["restartCount"], 0, "never created: not a restart");
    // The first retry is at once, then 10 s later, then 20 s.
    assert_eq!(sim.rt.count(|c| matches!(c, Call::Create(_))), 2);
    assert_eq!(sim.wake, Some(s(10)));
    sim.run_until(s(10));
    assert_eq!(sim.rt.count(|c| matches!(c, Call::Create(_))), 3);
    sim.run_until(s(30));
    assert!(sim.pod("web").containers[0].running().is_some());
    let failed = sim.events.iter().filter(|e| e.reason == "Failed").count();
    assert_eq!(failed, 3);
}

#[test]
fn a_failed_launch_counts_as_a_run() {
    let mut sim = Sim::new();
    sim.rt.fail_launch("main", || {
        StartError::Run("crun run: executable file `nope` not found".into())
    });
    sim.write("web.yaml", &yaml("web", "nope", ""));
    let c = &sim.pod("web").containers[0];
    assert!(c.running().is_some(), "retried at once");
    let v = sim.status("web");
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["reason"], "StartError");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 128);
    assert_eq!(cs["restartCount"], 1);
}

#[test]
fn a_sandbox_setup_failure_is_retried_with_backoff() {
    let mut sim = Sim::new();
    for _ in 0..2 {
        sim.rt
            .setup_failures
            .borrow_mut()
            .push_back(crate::runtime::SandboxError::Setup(
                crate::runtime::podsetup::SetupError::HostPath {
                    volume: "data".into(),
                    path: "/srv/data".into(),
                    message: "is not a directory (type: Directory)".into(),
                },
            ));
    }
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    // The first retry is at once, the next 10 s later.
    assert_eq!(sim.rt.count(|c| matches!(c, Call::Setup(_))), 2);
    let v = sim.status("web");
    assert_eq!(v["status"]["conditions"][0]["reason"], "SandboxSetupFailed");
    assert_eq!(sim.reasons(), vec!["FailedMount", "FailedMount"]);
    assert_eq!(sim.wake, Some(s(10)));
    sim.run_until(s(10));
    assert!(sim.pod("web").containers[0].running().is_some());
}

#[test]
fn a_lost_sandbox_is_set_up_again_after_its_containers_stopped() {
    let mut sim = Sim::new();
    let body = yaml("web", "sleep, '1000'", "").replace(
        "  containers:\n",
        "  containers:\n  - {name: side, image: busybox:1.36, command: [sleep, '1000']}\n",
    );
    sim.write("web.yaml", &body);
    let pod = sim.pod("web");
    let side = pod.containers[0].running().unwrap().id.clone();
    let main = pod.containers[1].running().unwrap().id.clone();
    // main exits; its restart finds the sandbox gone.
    sim.rt.fail_create("main", || {
        StartError::SandboxLost("namespace /x/ns/net is not mounted".into())
    });
    sim.exit(&main, 1);
    let calls = sim.calls();
    assert!(calls.contains(&Call::Stop(side.clone())), "{calls:?}");
    assert_eq!(
        sim.rt.count(|c| matches!(c, Call::Setup(_))),
        2,
        "set up again"
    );
    let pod = sim.pod("web");
    assert!(pod.containers.iter().all(|c| c.running().is_some()));
    assert_eq!(
        pod.containers[0]
            .last
            .as_ref()
            .and_then(|t| t.message.as_deref()),
        Some(super::super::inputs::SANDBOX_GONE)
    );
    assert!(sim.reasons().contains(&"SandboxChanged"));
}

#[test]
fn a_signal_ends_the_agent_and_leaves_the_containers() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let before = sim.calls().len();
    sim.input(Input::Shutdown);
    assert!(sim.shutdown);
    assert_eq!(sim.calls().len(), before);
    assert_eq!(sim.live().len(), 1);
}

/// A stop whose exit record never comes (a monitor killed before it wrote it) does not
/// hold the pod up, nor is it stopped again and again.
#[test]
fn a_lost_exit_record_ends_the_container_after_a_while() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    let id = sim.running_id("web");
    sim.rt.lose_exits.set(true);
    sim.remove("web.yaml");
    assert_eq!(sim.rt.count(|c| *c == Call::Stop(id.clone())), 1);
    assert_eq!(sim.core.pods().len(), 1, "waiting for the exit record");
    assert_eq!(sim.wake, Some(crate::agent::core::inputs::EXIT_RECORD_WAIT));
    sim.run_until(s(5));
    assert_eq!(sim.rt.count(|c| *c == Call::Stop(id.clone())), 1);
    assert!(sim.calls().contains(&Call::Release(id)));
    assert!(sim.core.pods().is_empty());
}
