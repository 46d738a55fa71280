//! The health-gated rollback through the core: a candidate that crash-loops or never gets
//! Ready is rolled back and held off; a healthy one is promoted; the state is kept for the
//! next agent.

use super::*;

fn web(version: &str, extra: &str) -> String {
    yaml("web", &format!("sleep, '{version}'"), extra).replace(
        "metadata: {name: web, namespace: default}",
        "metadata: {name: web, namespace: default, annotations: {staticlet.dev/rollback-after: 60s}}",
    )
}

fn condition(sim: &mut Sim, kind: &str) -> Value {
    sim.status("web")["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_crash_looping_candidate_is_rolled_back_and_held_off() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &web("1000", ""));
    let good = sim.pod("web").uid().to_string();
    sim.run_until(s(5));
    sim.write("web.yaml", &web("2000", ""));
    let candidate = sim.pod("web").uid().to_string();
    assert_ne!(good, candidate);
    assert_eq!(sim.rt.rollouts.borrow().len(), 1, "the trial is kept");
    let id = sim.running_id("web");
    sim.exit(&id, 1);
    // The first restart fails the trial: the last good version runs again.
    assert_eq!(sim.pod("web").uid(), good, "{:?}", sim.reasons());
    assert!(sim.reasons().contains(&"RolledBack"), "{:?}", sim.reasons());
    let c = condition(&mut sim, "staticlet.dev/RolledBack");
    assert_eq!(c["status"], "True");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("restarted (exit code 1"),
        "{c}"
    );
    assert!(sim.live().iter().all(|id| !id.contains(&candidate[..8])));
    // The same bad version again (a relist): held off.
    sim.write("web.yaml", &web("2000", ""));
    assert_eq!(sim.pod("web").uid(), good);
    let kept = sim.rt.rollouts.borrow().clone();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].candidate, candidate);
    assert!(kept[0].held.is_some());
    // A new version is a new candidate.
    sim.write("web.yaml", &web("3000", ""));
    let third = sim.pod("web").uid().to_string();
    assert!(third != good && third != candidate);
    assert_eq!(condition(&mut sim, "staticlet.dev/RolledBack"), Value::Null);
}

#[test]
fn a_healthy_candidate_is_promoted_at_the_end_of_its_trial() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &web("1000", ""));
    sim.write("web.yaml", &web("2000", ""));
    let candidate = sim.pod("web").uid().to_string();
    assert_eq!(sim.wake, Some(s(60)), "woken at the end of the trial");
    sim.run_until(s(61));
    assert_eq!(sim.pod("web").uid(), candidate);
    assert!(
        sim.reasons().contains(&"RolloutPromoted"),
        "{:?}",
        sim.reasons()
    );
    assert!(sim.rt.rollouts.borrow().is_empty(), "nothing left to keep");
    // Promoted: a crash now is a crash, not a rollback.
    let id = sim.running_id("web");
    sim.exit(&id, 1);
    assert_eq!(sim.pod("web").uid(), candidate);
}

#[test]
fn a_candidate_that_never_gets_ready_is_rolled_back_at_the_deadline() {
    let mut sim = Sim::new();
    let probe = "    readinessProbe:\n      exec: {command: ['true']}\n      periodSeconds: 5\n      failureThreshold: 1\n";
    sim.write("web.yaml", &web("1000", probe));
    sim.run_until(s(6));
    let good = sim.pod("web").uid().to_string();
    sim.rt
        .handler_results
        .borrow_mut()
        .insert("main".into(), std::iter::repeat_n(false, 100).collect());
    sim.write("web.yaml", &web("2000", probe));
    sim.run_until(s(50));
    assert_ne!(sim.pod("web").uid(), good, "still on trial");
    sim.run_until(s(80));
    assert_eq!(sim.pod("web").uid(), good);
    let c = condition(&mut sim, "staticlet.dev/RolledBack");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("not Ready within 60s"),
        "{c}"
    );
}

#[test]
fn without_the_annotation_or_the_default_an_edit_is_final() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    sim.write("web.yaml", &yaml("web", "sleep, '2000'", ""));
    let candidate = sim.pod("web").uid().to_string();
    let id = sim.running_id("web");
    sim.exit(&id, 1);
    assert_eq!(sim.pod("web").uid(), candidate, "the kubelet's behaviour");
    assert!(sim.rt.rollouts.borrow().is_empty());
}

/// An agent restarted in the middle of a trial (kill -9, a power cut) goes on with it,
/// counted from the candidate's start (not from the restart): the candidate it adopts never
/// gets Ready, and the last good version, kept only in the rollout record, comes back.
#[test]
fn a_trial_goes_on_after_an_agent_restart() {
    use crate::runtime::{FoundContainer, FoundInstance, FoundPod, Inventory};
    let probe = "    readinessProbe:\n      exec: {command: ['true']}\n      periodSeconds: 5\n      failureThreshold: 1\n";
    let mut first = Sim::new();
    first.write("web.yaml", &web("1000", probe));
    let good = first.pod("web").uid().to_string();
    first.run_until(s(10));
    first
        .rt
        .handler_results
        .borrow_mut()
        .insert("main".into(), std::iter::repeat_n(false, 100).collect());
    first.write("web.yaml", &web("2000", probe));
    first.run_until(s(40));
    let candidate = first.pod("web").pod.clone();
    let running = first.pod("web").containers[0].running().cloned().unwrap();
    let kept = first.rt.rollouts.borrow().clone();
    assert_eq!(kept.len(), 1);

    // The new agent's clock starts 45 s after the first one's: 35 s into the trial.
    let mut sim = Sim::new();
    sim.tick = s(45);
    sim.rt
        .handler_results
        .borrow_mut()
        .insert("main".into(), std::iter::repeat_n(false, 100).collect());
    let found = FoundPod {
        pod: (*candidate).clone(),
        containers: vec![FoundContainer {
            name: "main".into(),
            record: None,
            latest: Some(FoundInstance::Running(running)),
        }],
    };
    let adoption = sim.core.adopt(
        Inventory {
            pods: vec![found],
            rollouts: kept,
            ..Default::default()
        },
        sim.now(),
    );
    assert!(adoption.pending.is_empty());
    sim.write("web.yaml", &web("2000", probe));
    assert_eq!(sim.pod("web").uid(), candidate.uid(), "the trial goes on");
    sim.run_until(s(65));
    assert_eq!(
        sim.pod("web").uid(),
        candidate.uid(),
        "60 s from its start, not from the restart"
    );
    sim.run_until(s(75));
    assert_eq!(
        sim.pod("web").uid(),
        good,
        "rolled back to the kept version"
    );
}
