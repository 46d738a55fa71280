//! The health-gated rollback on real crun (issue 14): a changed manifest that crash-loops or
//! never gets Ready is rolled back to the last good version, which serves again; a healthy
//! one is promoted; a trial survives `kill -9` of the agent.

use crate::common;

use common::*;
use std::time::Duration;

fn web(version: &str, after: &str, extra: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: default\n  annotations: {{staticlet.dev/rollback-after: {after}}}\n  labels: {{version: '{version}'}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: {command}\n{extra}"
    )
}

fn serving(version: &str) -> String {
    format!("[sh, -c, 'echo serving {version}; exec sleep 1000']")
}

/// The pod named web once its `version` label is `v` and its container runs.
fn wait_version(a: &Agent, v: &str, secs: u64) -> serde_json::Value {
    wait_until_or_none(Duration::from_secs(secs), || {
        a.pod("web").filter(|p| {
            p["metadata"]["labels"]["version"] == v
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "web {v} does not run: {:?}\n{}",
            a.pod("web"),
            a.agent_log()
        )
    })
}

/// The container's log once it says `needle` (a container that just started may not have
/// written it yet).
fn log_saying(a: &Agent, needle: &str) {
    wait_until_or_none(Duration::from_secs(30), || {
        let (ok, log, _) = a.cli(&["logs", "web"]);
        (ok && log.contains(needle)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no {needle:?} in the log of web: {:?}",
            a.cli(&["logs", "web"])
        )
    });
}

fn rolled_back(p: &serde_json::Value) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "staticlet.dev/RolledBack")
        .and_then(|c| c["message"].as_str().map(String::from))
}

#[test]
fn a_crash_looping_candidate_is_rolled_back_and_the_old_version_serves_again() {
    let mut a = Agent::new("rollout-crash");
    a.start();
    a.write_manifest("web.yaml", &web("1", "30s", "", &serving("v1")));
    wait_version(&a, "1", 60);
    a.write_manifest(
        "web.yaml",
        &web("2", "30s", "", "[sh, -c, 'echo v2 broken; exit 3']"),
    );
    let back = wait_until_or_none(Duration::from_secs(60), || {
        a.pod("web").filter(|p| {
            p["metadata"]["labels"]["version"] == "1"
                && rolled_back(p).is_some()
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
    })
    .unwrap_or_else(|| panic!("not rolled back: {:?}\n{}", a.pod("web"), a.agent_log()));
    let message = rolled_back(&back).unwrap();
    assert!(message.contains("restarted (exit code 3"), "{message}");
    log_saying(&a, "serving v1");
    let (ok, out, _) = a.cli(&["get", "pods"]);
    assert!(ok && out.contains("Running (rolled back)"), "{out}");
    let metrics = a.http("/metrics").unwrap();
    assert!(metrics.contains("staticlet_rollbacks_total 1"), "{metrics}");
    assert!(
        a.agent_log().contains("failed its trial"),
        "{}",
        a.agent_log()
    );
    let (ok, out, _) = a.cli(&["describe", "pod", "web"]);
    assert!(ok && out.contains("RolledBack"), "{out}");
    // Held off: the bad version never runs again while the file says it.
    std::thread::sleep(Duration::from_secs(3));
    let p = a.pod("web").unwrap();
    assert_eq!(p["metadata"]["labels"]["version"], "1");
    assert!(
        a.root.join("rollouts.json").exists(),
        "kept for the next agent"
    );
}

#[test]
fn a_healthy_candidate_is_promoted() {
    let mut a = Agent::new("rollout-good");
    a.start();
    a.write_manifest("web.yaml", &web("1", "3s", "", &serving("v1")));
    wait_version(&a, "1", 60);
    a.write_manifest("web.yaml", &web("2", "3s", "", &serving("v2")));
    wait_version(&a, "2", 60);
    wait_until_or_none(Duration::from_secs(30), || {
        a.agent_log().contains("passed its trial").then_some(())
    })
    .unwrap_or_else(|| panic!("not promoted:\n{}", a.agent_log()));
    assert!(!a.root.join("rollouts.json").exists());
    assert_eq!(rolled_back(&a.pod("web").unwrap()), None);
}

#[test]
fn a_trial_survives_kill_9_of_the_agent_and_a_never_ready_candidate_is_rolled_back() {
    let mut a = Agent::new("rollout-kill");
    a.start();
    a.write_manifest("web.yaml", &web("1", "8s", "", &serving("v1")));
    wait_version(&a, "1", 60);
    let never_ready =
        "    readinessProbe:\n      exec: {command: ['false']}\n      periodSeconds: 1\n";
    a.write_manifest("web.yaml", &web("2", "8s", never_ready, &serving("v2")));
    wait_version(&a, "2", 60);
    assert!(
        a.root.join("rollouts.json").exists(),
        "the trial is on disk"
    );
    a.kill9();
    std::thread::sleep(Duration::from_secs(2));
    a.start();
    let back = wait_until_or_none(Duration::from_secs(60), || {
        a.pod("web").filter(|p| {
            p["metadata"]["labels"]["version"] == "1"
                && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
        })
    })
    .unwrap_or_else(|| panic!("not rolled back: {:?}\n{}", a.pod("web"), a.agent_log()));
    let message = rolled_back(&back).unwrap_or_default();
    assert!(
        message.contains("not Ready within 8s"),
        "{message}\n{back}\n{}",
        a.agent_log()
    );
    log_saying(&a, "serving v1");
}
