//! An agent restarted over running containers: what the runtime's inventory holds becomes
//! the core's state, and only what needs it is started again.

use super::*;
use crate::runtime::{
    ContainerRecord, FoundContainer, FoundInstance, FoundPod, Inventory, Layout, Running,
    SweepScope,
};

fn found(name: &str, file: &str, latest: Option<FoundInstance>, restarts: u32) -> FoundPod {
    let source = Source::File(std::path::PathBuf::from(file));
    let pod = manifest::load(yaml(name, "sleep, '1000'", "").as_bytes(), &source, NODE).unwrap();
    FoundPod {
        pod,
        containers: vec![FoundContainer {
            name: "main".into(),
            record: Some(ContainerRecord {
                restart_count: restarts,
                ever_started: true,
                last: None,
                backoff_delay_secs: Some(20),
            }),
            latest,
        }],
    }
}

fn running(uid_of: &FoundPod, attempt: u32) -> Running {
    Running {
        attempt,
        id: Layout::container_id(uid_of.pod.uid(), "main", attempt),
        pid: 4000 + attempt as i32,
        monitor_pid: 3000 + attempt as i32,
        started_at: "2026-01-01T00:00:00Z".into(),
        since: Duration::ZERO,
    }
}

/// What the shell does at start-up: adopt, sweep, apply the exits written meanwhile; then
/// the directory is read.
fn restart(sim: &mut Sim, inventory: Inventory) -> SweepScope {
    let adoption = sim.core.adopt(inventory, sim.now());
    smol::block_on(crate::runtime::Runtime::sweep(&sim.rt, &adoption.keep));
    for rec in adoption.pending {
        sim.input(Input::Exited(rec));
    }
    adoption.keep
}

#[test]
fn a_restarted_agent_adopts_what_runs_and_restarts_only_what_ended() {
    let mut sim = Sim::new();
    let dir = |f: &str| format!("{DIR}/{f}");
    // a: still running; b: ended while the agent was down; c: its end was lost; d: from a
    // source that is no longer configured.
    let mut a = found("a", &dir("a.yaml"), None, 0);
    a.containers[0].latest = Some(FoundInstance::Running(running(&a, 0)));
    let mut b = found("b", &dir("b.yaml"), None, 2);
    let b_run = running(&b, 2);
    let mut b_exit = sim.rt.exit(&b_run.id, 1);
    b_exit.pod_uid = b.pod.uid().into();
    b_exit.container = "main".into();
    b_exit.attempt = 2;
    b.containers[0].latest = Some(FoundInstance::Exited(b_run.clone(), b_exit));
    let mut c = found("c", &dir("c.yaml"), None, 0);
    c.containers[0].latest = Some(FoundInstance::Lost {
        attempt: 0,
        started_at: "2026-01-01T00:00:00Z".into(),
    });
    let mut d = found("d", "/srv/old-manifests/d.yaml", None, 0);
    let d_run = running(&d, 0);
    d.containers[0].latest = Some(FoundInstance::Running(d_run.clone()));
    let a_run = running(&a, 0);
    sim.rt.adopted(a.pod.uid(), &a_run);
    sim.rt.adopted(d.pod.uid(), &d_run);
    let uids: Vec<String> = [&a, &b, &c, &d]
        .iter()
        .map(|p| p.pod.uid().to_string())
        .collect();
    let keep = restart(
        &mut sim,
        Inventory {
            pods: vec![a, b, c, d],
            strays: Ok(Vec::new()),
            rollouts: Vec::new(),
        },
    );
    let SweepScope::Keep {
        pods,
        running: kept,
    } = keep
    else {
        panic!("a start-up sweep keeps what was adopted");
    };
    assert_eq!(pods.len(), 4);
    assert!(kept.contains(&a_run.id) && kept.contains(&b_run.id) && kept.contains(&d_run.id));
    // Until the directory is read, nothing but d (no longer configured) is touched.
    assert!(sim.calls().contains(&Call::Stop(d_run.id.clone())));
    let files: Vec<(&str, String)> = [("a.yaml", "a"), ("b.yaml", "b"), ("c.yaml", "c")]
        .into_iter()
        .map(|(file, name)| (file, yaml(name, "sleep, '1000'", "")))
        .collect();
    sim.write_all(&files);
    // b's backoff survived the restart (20 s, as recorded): it waits, then runs again.
    let v = sim.status("b");
    assert_eq!(
        v["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "CrashLoopBackOff"
    );
    sim.run_until(s(20));
    assert_eq!(sim.running_id("a"), a_run.id, "a is adopted, not restarted");
    assert_eq!(sim.pod("a").containers[0].restart_count, 0);
    let b_now = sim.pod("b").containers[0].clone();
    assert_eq!(b_now.restart_count, 3, "b's exit counts, and b runs again");
    assert_eq!(b_now.running().map(|r| r.attempt), Some(3));
    assert!(sim.calls().contains(&Call::Release(b_run.id)));
    let v = sim.status("c");
    assert_eq!(
        v["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"],
        "ContainerStatusUnknown"
    );
    assert!(sim.pod("c").containers[0].running().is_some());
    assert!(!sim.core.pods().contains_key(&uids[3]), "d is gone");
    assert!(sim.calls().contains(&Call::Teardown(uids[3].clone())));
    assert!(
        !sim.calls()
            .iter()
            .any(|c| matches!(c, Call::Create(id) if *id == a_run.id)),
        "a was never started again"
    );
}

/// The last good version of a manifest that is invalid when the agent starts keeps running.
#[test]
fn an_invalid_manifest_at_start_up_keeps_the_adopted_pod() {
    let mut sim = Sim::new();
    let mut a = found("a", &format!("{DIR}/a.yaml"), None, 0);
    let a_run = running(&a, 0);
    a.containers[0].latest = Some(FoundInstance::Running(a_run.clone()));
    sim.rt.adopted(a.pod.uid(), &a_run);
    restart(
        &mut sim,
        Inventory {
            pods: vec![a],
            strays: Ok(Vec::new()),
            rollouts: Vec::new(),
        },
    );
    sim.write("a.yaml", "kind: Pod\n");
    assert_eq!(sim.running_id("a"), a_run.id);
    assert_eq!(sim.core.problems().len(), 1);
    assert_eq!(
        sim.core.problems()[0].pod.as_deref(),
        Some(format!("default/a-{NODE}").as_str())
    );
}

/// An agent restart does not extend `activeDeadlineSeconds`: the deadline counts from the
/// pod's start time, which the pod keeps (its `seen` stamp).
#[test]
fn a_restart_does_not_extend_an_active_deadline() {
    let mut sim = Sim::new();
    let source = Source::File(format!("{DIR}/job.yaml").into());
    let body =
        yaml("job", "sleep, '1000'", "").replace("spec:\n", "spec:\n  activeDeadlineSeconds: 60\n");
    let mut pod = manifest::load(body.as_bytes(), &source, NODE).unwrap();
    // Seen 50 s before this agent's clock starts (sim.now() at tick 0).
    let seen = sim.now().wall - Duration::from_secs(50);
    pod.set_seen(&crate::sys::timefmt::rfc3339(seen));
    let mut fp = FoundPod {
        pod,
        containers: vec![FoundContainer {
            name: "main".into(),
            record: None,
            latest: None,
        }],
    };
    fp.containers[0].latest = Some(FoundInstance::Running(running(&fp, 0)));
    restart(
        &mut sim,
        Inventory {
            pods: vec![fp],
            ..Default::default()
        },
    );
    assert_eq!(sim.pod("job").active_deadline, Some(s(10)));
    sim.run_until(s(11));
    assert_eq!(sim.status("job")["status"]["reason"], "DeadlineExceeded");
}
