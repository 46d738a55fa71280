//! Operations that are still in flight when something else happens: a manifest edited
//! again while its old version stops, a sandbox set up while its pod is replaced, a start
//! slower than `runtimeRequestTimeout`.

use super::*;

fn is_stop(c: &Command) -> bool {
    matches!(c, Command::Stop { .. })
}

fn creates(sim: &Sim) -> Vec<String> {
    sim.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Create(id) => Some(id),
            _ => None,
        })
        .collect()
}

/// Edited twice while the first version is still stopping: the middle version never starts
/// a container, the last one starts only once the first has stopped, and no container ever
/// runs twice.
#[test]
fn an_edit_while_the_old_version_stops_waits_for_it() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1'", ""));
    let v1 = sim.running_id("web");
    sim.hold = Box::new(is_stop);
    sim.write("web.yaml", &yaml("web", "sleep, '2'", ""));
    let v2_uid = sim.pod("web").uid().to_string();
    assert_eq!(sim.held.len(), 1, "v1's stop is in flight");
    assert_eq!(creates(&sim), vec![v1.clone()], "v2 waits for v1");
    assert!(
        sim.calls().contains(&Call::Setup(v2_uid.clone())),
        "v2 sets its sandbox up meanwhile"
    );
    sim.write("web.yaml", &yaml("web", "sleep, '3'", ""));
    assert_eq!(creates(&sim), vec![v1.clone()], "v3 waits for v1 too");
    assert!(
        sim.calls().contains(&Call::Teardown(v2_uid.clone())),
        "v2 had nothing running: it goes at once"
    );
    sim.hold = Box::new(|_| false);
    sim.finish_held(|_| true);
    let v3 = sim.running_id("web");
    assert_eq!(creates(&sim), vec![v1, v3.clone()]);
    assert_eq!(sim.live(), vec![v3]);
    assert_eq!(sim.core.pods().len(), 1, "v1 and v2 are gone");
    assert!(sim.rt.most_at_once.borrow().values().all(|n| *n == 1));
}

/// Edited back to the running version while that version is stopping: it is started again
/// (fresh) once its old self has been torn down.
#[test]
fn reverting_an_edit_while_the_old_version_stops_runs_it_again() {
    let mut sim = Sim::new();
    sim.write("web.yaml", &yaml("web", "sleep, '1'", ""));
    let v1_uid = sim.pod("web").uid().to_string();
    let v1 = sim.running_id("web");
    sim.hold = Box::new(is_stop);
    sim.write("web.yaml", &yaml("web", "sleep, '2'", ""));
    sim.write("web.yaml", &yaml("web", "sleep, '1'", ""));
    assert!(sim.core.pods()[&v1_uid].terminating, "still stopping");
    sim.hold = Box::new(|_| false);
    sim.finish_held(|_| true);
    let again = sim.pod("web");
    assert_eq!(again.uid(), v1_uid, "the same version, started afresh");
    assert_eq!(sim.running_id("web"), v1, "its first attempt again");
    assert_eq!(sim.core.pods().len(), 1);
    assert_eq!(sim.live().len(), 1);
}

/// A manifest rewritten while its sandbox is being set up: the teardown waits for the setup
/// job, so nothing that job mounts is left behind, and the new version runs.
#[test]
fn a_pod_replaced_while_its_sandbox_is_set_up_is_torn_down_after_it() {
    let mut sim = Sim::new();
    sim.hold = Box::new(|c| matches!(c, Command::SetupSandbox(_)));
    sim.write("web.yaml", &yaml("web", "sleep, '1'", ""));
    let v1_uid = sim.pod("web").uid().to_string();
    sim.write("web.yaml", &yaml("web", "sleep, '2'", ""));
    let v2_uid = sim.pod("web").uid().to_string();
    assert!(
        !sim.calls().contains(&Call::Teardown(v1_uid.clone())),
        "not while its setup runs"
    );
    sim.hold = Box::new(|_| false);
    sim.finish_held(|_| true);
    let calls = sim.calls();
    let pos = |c: &Call| calls.iter().position(|x| x == c).unwrap();
    assert!(pos(&Call::Setup(v1_uid.clone())) < pos(&Call::Teardown(v1_uid.clone())));
    assert!(sim.pod("web").containers[0].running().is_some());
    assert_eq!(sim.pod("web").uid(), v2_uid);
    assert_eq!(creates(&sim).len(), 1, "v1 never started a container");
}

/// A launch the runtime does not finish within `runtimeRequestTimeout` is abandoned and
/// confirmed gone before the next attempt; its late report changes nothing.
#[test]
fn a_start_slower_than_the_runtime_timeout_is_abandoned_before_a_retry() {
    let mut sim = Sim::with_timeout(s(2));
    sim.hold = Box::new(|c| matches!(c, Command::Launch(_)));
    sim.write("web.yaml", &yaml("web", "sleep, '1000'", ""));
    assert_eq!(sim.wake, Some(s(2)), "the launch deadline");
    sim.run_until(s(1));
    assert_eq!(sim.held.len(), 1);
    sim.run_until(s(2));
    let first = crate::runtime::Layout::container_id(sim.pod("web").uid(), "main", 0);
    assert!(sim.calls().contains(&Call::Abandon(first.clone())));
    assert_eq!(sim.held.len(), 2, "the retry is launched after the abandon");
    let calls = sim.calls();
    let pos = |c: &Call| calls.iter().position(|x| x == c).unwrap();
    let second = crate::runtime::Layout::container_id(sim.pod("web").uid(), "main", 1);
    assert!(pos(&Call::Abandon(first.clone())) < pos(&Call::Create(second.clone())));
    // The first launch reports late (its monitor was killed): nothing changes.
    sim.hold = Box::new(|_| false);
    sim.finish_held(|c| matches!(c, Command::Launch(spec) if spec.attempt == 0));
    assert!(sim.pod("web").containers[0].running().is_none());
    sim.finish_held(|_| true);
    assert_eq!(sim.running_id("web"), second);
    let v = sim.status("web");
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "StartError");
    assert_eq!(
        cs["lastState"]["terminated"]["message"],
        "the runtime did not start the container within 2s (runtimeRequestTimeout)"
    );
    assert!(sim.rt.most_at_once.borrow().values().all(|n| *n == 1));
}

/// A container that ends at once: its monitor's exit record can reach the agent before the
/// launch's own report. The exit is kept and applied when the launch is, so the container
/// is restarted (not shown running for ever with a process that is gone).
#[test]
fn an_exit_that_comes_before_its_launch_report_is_applied_after_it() {
    let mut sim = Sim::new();
    sim.hold = Box::new(|c| matches!(c, Command::Launch(_)));
    sim.write("web.yaml", &yaml("web", "sh, -c, 'exit 3'", ""));
    assert_eq!(sim.held.len(), 1, "the launch is in flight");
    sim.hold = Box::new(|_| false);
    let launch = sim.held.pop().unwrap();
    let reported = smol::block_on(perform(&sim.rt, launch)).expect("a launch reports");
    let id = sim.live().pop().expect("the fake launched it");
    let rec = sim.rt.exit(&id, 3);
    sim.input(Input::Exited(rec));
    assert!(
        !sim.calls().contains(&Call::Release(id.clone())),
        "not freed before the launch's report"
    );
    sim.input(reported);
    let c = &sim.pod("web").containers[0];
    assert_eq!(
        c.last.as_ref().map(|t| t.exit_code),
        Some(3),
        "the exit applied"
    );
    assert!(
        c.running().is_none_or(|r| r.id != id),
        "the ended instance is not shown running"
    );
    assert!(sim.calls().contains(&Call::Release(id)), "and freed");
}
