//! The command line as a kubectl user types it, and the status it shows: flags, `get pods`
//! by name and in order, read-only commands that change nothing, configuration errors that
//! name the field, relative paths, condition transition times, one warning per failure.

use crate::common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

fn staticlet(args: &[&str], cwd: Option<&Path>) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    c.output().expect("running the staticlet binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn help_version_and_flags_after_the_verb_are_accepted() {
    for args in [&["-h"][..], &["get", "-h"], &["images", "list", "-h"]] {
        let out = staticlet(args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage: staticlet"), "{args:?}");
    }
    let out = staticlet(&["--version"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("staticlet {}", env!("CARGO_PKG_VERSION"))
    );
    let out = staticlet(&[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Commands:"));

    let base = unique_dir("flags");
    let layout = busybox_layout(&base);
    let root = base.join("root");
    let root_s = root.to_str().unwrap();
    // Before the verb, as before, and after it.
    let out = staticlet(
        &[
            "images",
            "--root-dir",
            root_s,
            "import",
            layout.to_str().unwrap(),
            "--name",
            IMAGE,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = staticlet(&["images", "list", "--root-dir", root_s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(IMAGE), "{}", text(&out.stdout));
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn read_only_commands_create_nothing() {
    let base = unique_dir("readonly");
    let root = base.join("not/yet/root");
    let logs = base.join("not/yet/logs");
    let config = base.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\npodLogsDir: {}\n",
            logs.display()
        ),
    )
    .unwrap();
    let out = staticlet(
        &[
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--root-dir",
            root.to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{} does not exist yet", root.display())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{} does not exist yet", logs.display())));
    let out = staticlet(
        &["images", "list", "--root-dir", root.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !base.join("not").exists(),
        "doctor or images list created {}",
        base.join("not").display()
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn a_config_type_error_names_the_file_and_the_field() {
    let base = unique_dir("cfgtype");
    let config = base.join("staticlet.yaml");
    std::fs::write(
        &config,
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nfileCheckFrequency: 20\n",
    )
    .unwrap();
    let out = staticlet(&["get", "pods", "--config", config.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(config.to_str().unwrap()) && err.contains("fileCheckFrequency"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

fn names_in_table(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("/"))
        .collect()
}

#[test]
fn get_pods_by_name_in_order_and_as_names() {
    let mut a = Agent::new("getpods");
    a.start();
    for (ns, name) in [
        ("default", "zeta"),
        ("default", "alpha"),
        ("aaa", "mid"),
        ("default", "beta"),
    ] {
        let yaml = pod_yaml(name, "", "", "[sleep, '1000']")
            .replace("namespace: default", &format!("namespace: {ns}"));
        a.write_manifest(&format!("{name}.yaml"), &yaml);
    }
    wait_until("four pods listed", Duration::from_secs(30), || {
        (a.pods()["items"].as_array()?.len() == 4).then_some(())
    });
    let (ok, table, err) = a.cli(&["get", "pods"]);
    assert!(ok, "{err}");
    assert_eq!(
        names_in_table(&table),
        [
            "aaa/mid-node1",
            "default/alpha-node1",
            "default/beta-node1",
            "default/zeta-node1"
        ],
        "{table}"
    );
    let (ok, table, err) = a.cli(&["get", "pods", "alpha"]);
    assert!(ok, "{err}");
    assert_eq!(names_in_table(&table), ["default/alpha-node1"], "{table}");
    let (ok, names, err) = a.cli(&["get", "pods", "zeta-node1", "alpha", "-o", "name"]);
    assert!(ok, "{err}");
    assert_eq!(names, "pod/zeta-node1\npod/alpha-node1\n");
    let (ok, names, _) = a.cli(&["get", "pod/beta", "-o", "name"]);
    assert!(ok);
    assert_eq!(names, "pod/beta-node1\n");
    let (ok, names, _) = a.cli(&["get", "pods", "-n", "aaa", "-o", "name"]);
    assert!(ok);
    assert_eq!(names, "pod/mid-node1\n");
    let (ok, json, _) = a.cli(&["get", "pods", "mid", "-o", "json"]);
    assert!(ok);
    let pod: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["name"], "mid-node1");
    let (ok, json, _) = a.cli(&["get", "pods", "-o", "json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&json).unwrap();
    let order: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["mid-node1", "alpha-node1", "beta-node1", "zeta-node1"]
    );
    let (ok, out, err) = a.cli(&["get", "pods", "nope"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains(r#"pods "nope" not found"#), "{err}");
}

/// The Ready condition and its lastTransitionTime.
fn ready_condition(a: &Agent, pod: &str) -> Option<(String, String)> {
    let p = a.pod(pod)?;
    let conditions = p["status"]["conditions"].as_array()?;
    let find = |t: &str| conditions.iter().find(|c| c["type"] == t).cloned();
    let (ready, containers) = (find("Ready")?, find("ContainersReady")?);
    assert_eq!(
        ready["lastTransitionTime"],
        containers["lastTransitionTime"]
    );
    Some((
        ready["status"].as_str()?.to_string(),
        ready["lastTransitionTime"].as_str()?.to_string(),
    ))
}

#[test]
fn ready_transition_time_changes_only_when_readiness_changes() {
    let mut a = Agent::new("transition");
    a.start();
    // Ready for 8 s, then the readiness probe (every second: a publish every second) fails.
    a.write_manifest(
        "flip.yaml",
        &pod_yaml(
            "flip",
            "",
            "    readinessProbe:\n      exec: {command: [test, -e, /tmp/ready]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
            "[sh, -c, 'touch /tmp/ready; sleep 8; rm /tmp/ready; sleep 1000']",
        ),
    );
    let (_, became_ready) = wait_until("Ready True", Duration::from_secs(60), || {
        ready_condition(&a, "flip").filter(|(s, _)| s == "True")
    });
    let t = staticlet::sys::timefmt::parse_rfc3339(&became_ready).expect("an RFC 3339 time");
    // Seconds pass and the probe keeps answering: the transition time must stay.
    wait_until("3 s of probes", Duration::from_secs(10), || {
        let passed = SystemTime::now().duration_since(t).ok()?;
        (passed >= Duration::from_secs(3)).then_some(())
    });
    let (status, at) = ready_condition(&a, "flip").unwrap();
    assert_eq!(
        (status.as_str(), at.as_str()),
        ("True", became_ready.as_str())
    );
    let (_, became_unready) = wait_until("Ready False", Duration::from_secs(30), || {
        ready_condition(&a, "flip").filter(|(s, _)| s == "False")
    });
    assert!(
        became_unready > became_ready,
        "{became_unready} after {became_ready}"
    );
}

#[test]
fn a_start_failure_is_logged_once() {
    let mut a = Agent::new("logonce");
    a.write_manifest(
        "noimage.yaml",
        &pod_yaml("noimage", "", "", "[sleep, '1']")
            .replace(IMAGE, "localhost/not-imported:1")
            .replace("command:", "imagePullPolicy: Never\n    command:"),
    );
    a.start();
    // The first retry comes at once; it fails the same way and is no news.
    wait_until("a second failed start", Duration::from_secs(30), || {
        a.agent_log()
            .contains("noimage-node1/main: still cannot start: ErrImageNeverPull")
            .then_some(())
    });
    let log = a.agent_log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("noimage-node1/main: cannot start: ErrImageNeverPull"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

#[test]
fn relative_paths_work_from_the_working_directory() {
    let mut a = Agent::new("relative");
    a.write_manifest(
        "rel.yaml",
        &pod_yaml("rel", "", "", "[sh, -c, 'echo hello-relative; sleep 1000']"),
    );
    let log = std::fs::File::create(a.base.join("agent.log")).unwrap();
    let port = a.port.to_string();
    let child = Command::new(bin())
        .current_dir(&a.base)
        .args([
            "run",
            "--pod-manifest-path",
            "manifests",
            "--root-dir",
            "root",
        ])
        .args(["--pod-logs-dir", "./logs", "--node-name", "node1"])
        .args(["--status-address", &format!("127.0.0.1:{port}")])
        .env("STATICLET_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    a.child = Some(child);
    a.wait_running("rel", "main");
    wait_until("the container's output", Duration::from_secs(20), || {
        let (ok, out, _) = a.cli(&["logs", "rel"]);
        (ok && out.contains("hello-relative")).then_some(())
    });
    let log_dirs: Vec<String> = std::fs::read_dir(&a.logs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        log_dirs.iter().any(|d| d.starts_with("default_rel-node1_")),
        "{log_dirs:?}"
    );
    let out = staticlet(&["images", "list", "--root-dir", "root"], Some(&a.base));
    assert!(text(&out.stdout).contains(IMAGE), "{}", text(&out.stdout));
}
