//! End to end on real crun: the agent binary, real containers, real files, real HTTP.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn http_get_local(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn host_network_httpd_answers_on_loopback() {
    let mut a = Agent::new("httpd");
    a.start();
    let port = free_port();
    a.write_manifest(
        "web.yaml",
        &pod_yaml(
            "web",
            "  hostNetwork: true\n",
            "",
            &format!("[httpd, -f, -p, '127.0.0.1:{port}', -h, /www]"),
        ),
    );
    a.wait_running("web", "main");
    let body = wait_until("httpd to answer", Duration::from_secs(20), || {
        http_get_local(port).filter(|b| b.contains("hello from a static pod"))
    });
    assert!(body.starts_with("HTTP/1."), "{body}");
    let p = a.pod("web").unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(p["spec"]["nodeName"], "node1");
}

#[test]
fn two_containers_share_localhost_and_logs_are_cri() {
    let mut a = Agent::new("duo");
    a.start();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: duo}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: server\n    image: {IMAGE}\n    command: [httpd, -f, -p, '8080', -h, /www]\n  - name: client\n    image: {IMAGE}\n    command: [sh, -c, 'while true; do wget -q -O- http://127.0.0.1:8080/; sleep 1; done']\n"
    );
    a.write_manifest("duo.yaml", &manifest);
    a.wait_running("duo", "server");
    a.wait_running("duo", "client");
    let out = wait_until("the client's log", Duration::from_secs(20), || {
        let (ok, out, _) = a.cli(&["logs", "duo", "-c", "client"]);
        (ok && out.contains("hello from a static pod")).then_some(out)
    });
    assert!(
        !out.contains("stdout F"),
        "logs print the content, not the CRI prefix"
    );
    let pod = a.pod("duo").unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let file = a.logs.join(format!("default_duo-node1_{uid}/client/0.log"));
    let raw = std::fs::read_to_string(&file).unwrap();
    // The client may have tried before the server listened: take the first answer it got.
    let first = raw
        .lines()
        .find(|l| l.ends_with("hello from a static pod"))
        .unwrap();
    let parts: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(
        staticlet::sys::timefmt::parse_rfc3339(parts[0]).is_some(),
        "{first}"
    );
    assert_eq!(&parts[1..3], &["stdout", "F"]);
    assert_eq!(parts[3], "hello from a static pod");
    // The pod's containers are in their own network namespace: the host's port 8080 is not theirs.
    let netns =
        std::fs::read_link(format!("/proc/{}/ns/net", pod_pid(&a, "duo", "server"))).unwrap();
    assert_ne!(netns, std::fs::read_link("/proc/self/ns/net").unwrap());
}

fn pod_pid(a: &Agent, pod: &str, container: &str) -> i64 {
    let p = a.pod(pod).unwrap();
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    a.crun_list()
        .into_iter()
        .find(|(id, _, s)| {
            id.starts_with(&uid[..12]) && id.contains(&format!("-{container}-")) && s == "running"
        })
        .map(|(_, pid, _)| pid)
        .unwrap()
}

#[test]
fn edit_replaces_the_container_and_invalid_edit_keeps_it() {
    let mut a = Agent::new("edit");
    a.start();
    a.write_manifest("app.yaml", &pod_yaml("app", "", "", "[sleep, '1000']"));
    a.wait_running("app", "main");
    let old = a.pod("app").unwrap();
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    let old_pid = pod_pid(&a, "app", "main");

    // An invalid edit: the old container keeps running, the error shows everywhere.
    a.write_manifest(
        "app.yaml",
        &pod_yaml("app", "", "", "[sleep, '1000']").replace("name: main", "name: Main_Bad"),
    );
    wait_until(
        "the manifest error in /pods",
        Duration::from_secs(20),
        || {
            let p = a.pod("app")?;
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "staticlet.dev/ManifestValid")
                .cloned()
        },
    );
    assert_eq!(
        pod_pid(&a, "app", "main"),
        old_pid,
        "the last good version keeps running"
    );
    let (_, table, _) = a.cli(&["get", "pods"]);
    assert!(
        table.contains("manifest error") && table.contains("must be a DNS-1123 label"),
        "{table}"
    );
    let problems = a.http("/manifests").unwrap();
    assert!(problems.contains("spec.containers[0].name"), "{problems}");

    // A valid edit: the old container goes, a new one runs.
    a.write_manifest("app.yaml", &pod_yaml("app", "", "", "[sleep, '2000']"));
    wait_until("the new pod", Duration::from_secs(30), || {
        a.pod("app").filter(|p| {
            p["metadata"]["uid"] != old_uid.as_str() && p["status"]["phase"] == "Running"
        })
    });
    a.wait_running("app", "main");
    let list = a.crun_list();
    assert!(
        !list.iter().any(|(id, _, _)| id.starts_with(&old_uid[..12])),
        "old container gone: {list:?}"
    );
    assert_eq!(list.len(), 1, "{list:?}");
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", list[0].1)).unwrap();
    assert!(cmdline.contains("2000"), "{cmdline:?}");
}

#[test]
fn delete_leaves_nothing_behind() {
    let mut a = Agent::new("delete");
    a.start();
    a.write_manifest(
        "gone.yaml",
        &pod_yaml(
            "gone",
            "  volumes:\n  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 8Mi}}\n",
            "    volumeMounts: [{name: scratch, mountPath: /scratch}]\n",
            "[sleep, '1000']",
        ),
    );
    a.wait_running("gone", "main");
    let uid = a.pod("gone").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !a.mounts_below_base().is_empty(),
        "the pod has mounts while it runs"
    );
    assert!(!a.pod_cgroups(&uid).is_empty(), "and a cgroup");
    assert_eq!(a.monitors().len(), 1);
    a.remove_manifest("gone.yaml");
    wait_until("the pod to go", Duration::from_secs(30), || {
        a.pod("gone").is_none().then_some(())
    });
    wait_until("no crun container", Duration::from_secs(10), || {
        a.crun_list().is_empty().then_some(())
    });
    wait_until("no monitor", Duration::from_secs(10), || {
        a.monitors().is_empty().then_some(())
    });
    assert!(
        a.mounts_below_base().is_empty(),
        "mounts left: {:?}",
        a.mounts_below_base()
    );
    assert!(
        a.pod_cgroups(&uid).is_empty(),
        "cgroups left: {:?}",
        a.pod_cgroups(&uid)
    );
    assert!(!a.root.join("pods").join(&uid).exists(), "pod dir left");
    assert!(
        std::fs::read_dir(a.root.join("exits"))
            .unwrap()
            .next()
            .is_none(),
        "exit records left"
    );
    assert!(
        !a.logs.join(format!("default_gone-node1_{uid}")).exists(),
        "logs left"
    );
}

/// Deleting a pod runs crun as often as bare crun needs to, plus the kill whose exit the pod
/// status reports: one `kill` and one `delete` for its container (a record seen twice, or a
/// teardown that deleted again what the release was deleting, made it five).
#[test]
fn deleting_a_pod_kills_and_deletes_its_container_once() {
    let mut a = Agent::new("delete-calls");
    let calls = a.base.join("crun-calls.log");
    let wrapper = a.base.join("crun-counting");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec crun \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    a.extra_args = vec!["--runtime".into(), wrapper.display().to_string()];
    a.start();
    let body = pod_yaml("once", "", "", "[sleep, '1000']").replace(
        "terminationGracePeriodSeconds: 1",
        "terminationGracePeriodSeconds: 0",
    );
    a.write_manifest("once.yaml", &body);
    a.wait_running("once", "main");
    a.remove_manifest("once.yaml");
    wait_until("the pod to go", Duration::from_secs(30), || {
        a.pod("once").is_none().then_some(())
    });
    let log = std::fs::read_to_string(&calls).unwrap();
    let count = |verb: &str| {
        log.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(verb))
            .count()
    };
    assert!(
        log.contains(" run "),
        "the wrapper ran the container: {log}"
    );
    assert_eq!((count("kill"), count("delete")), (1, 1), "{log}");
}

#[test]
fn crashing_container_backs_off() {
    let mut a = Agent::new("crash");
    a.start();
    a.write_manifest(
        "crash.yaml",
        &pod_yaml("crash", "", "", "[sh, -c, 'echo dying; exit 3']"),
    );
    let c = a.wait_container("crash", "main", "CrashLoopBackOff after a restart", |c| {
        c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && c["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    let (_, table, _) = a.cli(&["get", "pods"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    let (ok, prev, _) = a.cli(&["logs", "crash", "--previous"]);
    assert!(ok && prev.contains("dying"), "{prev}");
    assert!(a
        .agent_log()
        .contains("default/crash-node1/main: exited with code 3"));
}

#[test]
fn liveness_failure_restarts_the_container() {
    let mut a = Agent::new("liveness");
    a.start();
    let probe = "    livenessProbe:\n      exec: {command: [test, -e, /tmp/healthy]}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    a.write_manifest(
        "live.yaml",
        &pod_yaml(
            "live",
            "",
            probe,
            "[sh, -c, 'touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 1000']",
        ),
    );
    a.wait_running("live", "main");
    let c = a.wait_container("live", "main", "a restart after liveness failures", |c| {
        c["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    assert_eq!(
        c["lastState"]["terminated"]["message"]
            .as_str()
            .map(|m| m.contains("liveness probe failed")),
        Some(true),
        "{c}"
    );
    assert!(a.agent_log().contains("liveness probe failed"));
}

#[test]
fn memory_limit_is_enforced() {
    let mut a = Agent::new("oom");
    a.start();
    let limits = "    resources:\n      limits: {memory: 24Mi}\n";
    a.write_manifest(
        "hog.yaml",
        &pod_yaml(
            "hog",
            "  restartPolicy: Never\n",
            limits,
            "[sh, -c, 'x=$(head -c 200000000 /dev/zero | tr \"\\\\0\" x); echo survived ${#x}']",
        ),
    );
    let c = a.wait_container("hog", "main", "terminated", |c| {
        c["state"].get("terminated").is_some()
    });
    assert_eq!(c["state"]["terminated"]["reason"], "OOMKilled", "{c}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 137);
}

#[test]
fn sigkill_of_the_agent_keeps_containers_and_restart_adopts_them() {
    let mut a = Agent::new("adopt");
    a.start();
    a.write_manifest(
        "tick.yaml",
        &pod_yaml(
            "tick",
            "",
            "",
            "[sh, -c, 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done']",
        ),
    );
    a.wait_running("tick", "main");
    let before = a.crun_list();
    let monitors = a.monitors();
    let uid = a.pod("tick").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let log = a.logs.join(format!("default_tick-node1_{uid}/main/0.log"));
    wait_until("some log", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|l| l.contains("tick 2"))
    });
    a.kill9();
    let size_at_kill = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.crun_list(),
        before,
        "containers keep running without the agent"
    );
    assert!(
        std::fs::metadata(&log).unwrap().len() > size_at_kill,
        "and their output is still logged"
    );
    a.start();
    a.wait_running("tick", "main");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        a.crun_list(),
        before,
        "same containers, same PIDs after the restart"
    );
    assert_eq!(a.monitors(), monitors);
    assert_eq!(
        a.pod("tick").unwrap()["status"]["containerStatuses"][0]["restartCount"],
        0
    );
    assert!(a.agent_log().contains("adopted"));
    let text = std::fs::read_to_string(&log).unwrap();
    let numbers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "no output was lost across the restart"
    );
}

#[test]
fn exit_codes_while_the_agent_is_down_are_kept() {
    let mut a = Agent::new("downexit");
    a.start();
    a.write_manifest(
        "once.yaml",
        &pod_yaml(
            "once",
            "  restartPolicy: Never\n",
            "",
            "[sh, -c, 'sleep 2; exit 7']",
        ),
    );
    a.wait_running("once", "main");
    a.kill9();
    std::thread::sleep(Duration::from_secs(3));
    a.start();
    let c = a.wait_container("once", "main", "terminated", |c| {
        c["state"].get("terminated").is_some()
    });
    assert_eq!(c["state"]["terminated"]["exitCode"], 7);
    assert_eq!(a.pod("once").unwrap()["status"]["phase"], "Failed");
}

#[test]
fn pod_list_and_metrics_are_well_formed() {
    let mut a = Agent::new("formats");
    a.start();
    a.write_manifest("m.yaml", &pod_yaml("m", "", "", "[sleep, '1000']"));
    a.wait_running("m", "main");
    let (ok, json, _) = a.cli(&["get", "pods", "-o", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kind"], "PodList");
    assert_eq!(v["apiVersion"], "v1");
    let p = &v["items"][0];
    for field in ["name", "namespace", "uid", "annotations"] {
        assert!(p["metadata"].get(field).is_some(), "metadata.{field}");
    }
    let cs = &p["status"]["containerStatuses"][0];
    for field in ["name", "state", "ready", "started", "restartCount", "image"] {
        assert!(cs.get(field).is_some(), "containerStatuses[0].{field}");
    }
    assert!(p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let (ok, yaml, _) = a.cli(&["get", "pods", "-o", "yaml"]);
    assert!(ok && yaml.contains("kind: PodList"));
    let metrics = a.http("/metrics").unwrap();
    let mut samples = 0;
    for line in metrics.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value of {line}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if name.contains('{') {
            assert!(name.ends_with('}'), "{line}");
        }
        samples += 1;
    }
    assert!(samples > 5);
    assert!(
        metrics.contains("staticlet_pods{phase=\"Running\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("staticlet_container_start_seconds_count 1"),
        "{metrics}"
    );
}

#[test]
fn containers_that_cannot_start_are_reported_and_retried_without_harm() {
    let mut a = Agent::new("nostart");
    a.start();
    a.write_manifest("ok.yaml", &pod_yaml("ok", "", "", "[sleep, '1000']"));
    a.write_manifest(
        "badcmd.yaml",
        &pod_yaml("badcmd", "", "", "[/no/such/binary]"),
    );
    a.write_manifest(
        "noimage.yaml",
        &pod_yaml("noimage", "", "", "[sleep, '1']")
            .replace(IMAGE, "localhost/not-imported:1")
            .replace("command:", "imagePullPolicy: Never\n    command:"),
    );
    a.wait_running("ok", "main");
    let c = a.wait_container("badcmd", "main", "a start error with backoff", |c| {
        c["lastState"]["terminated"]["reason"] == "StartError"
            && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 128);
    assert!(
        c["lastState"]["terminated"]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/binary"),
        "{c}"
    );
    let c = a.wait_container("noimage", "main", "ErrImageNeverPull", |c| {
        c["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    assert!(c["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("localhost/not-imported:1"));
    assert_eq!(c["restartCount"], 0);
    // Nothing of the failed starts is left behind, and the healthy pod never noticed.
    let list = a.crun_list();
    assert_eq!(list.len(), 1, "only the healthy container exists: {list:?}");
    assert_eq!(
        a.pod("ok").unwrap()["status"]["containerStatuses"][0]["restartCount"],
        0
    );
    assert_eq!(a.http("/healthz").as_deref(), Some("ok"));
}

#[test]
fn pre_stop_hook_runs_and_grace_period_ends_in_sigkill() {
    let mut a = Agent::new("prestop");
    a.start();
    let marker = a.base.join("prestop-ran");
    let hook = "    volumeMounts: [{name: out, mountPath: /out}]\n    lifecycle:\n      preStop:\n        exec: {command: [sh, -c, 'echo bye > /out/prestop-ran']}\n".to_string();
    let spec = format!(
        "  volumes:\n  - {{name: out, hostPath: {{path: {}, type: Directory}}}}\n",
        a.base.display()
    );
    // A shell that ignores SIGTERM: only SIGKILL after the 1 s grace period ends it.
    a.write_manifest(
        "stubborn.yaml",
        &pod_yaml(
            "stubborn",
            &spec,
            &hook,
            "[sh, -c, 'trap \"\" TERM; while true; do sleep 1; done']",
        ),
    );
    a.wait_running("stubborn", "main");
    let started = std::time::Instant::now();
    a.remove_manifest("stubborn.yaml");
    wait_until("the pod to go", Duration::from_secs(30), || {
        a.pod("stubborn").is_none().then_some(())
    });
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the grace period was honoured"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "bye\n",
        "preStop ran"
    );
    assert!(
        a.agent_log()
            .contains("still running after 1s grace; killing it"),
        "{}",
        a.agent_log()
    );
    assert!(a.crun_list().is_empty());
}

#[test]
fn drain_stops_every_pod_once_the_agent_is_stopped() {
    let mut a = Agent::new("drain");
    a.start();
    a.write_manifest("one.yaml", &pod_yaml("one", "", "", "[sleep, '1000']"));
    a.write_manifest(
        "two.yaml",
        &pod_yaml("two", "", "", "[sh, -c, 'echo hi; sleep 1000']"),
    );
    a.wait_running("one", "main");
    a.wait_running("two", "main");
    let config = a.base.join("drain.yaml");
    std::fs::write(&config, format!("apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nstatusAddress: 127.0.0.1:{}\npodLogsDir: {}\n", a.port, a.logs.display())).unwrap();
    let root = a.root.clone();
    let drain = || {
        std::process::Command::new(bin())
            .arg("drain")
            .arg("--config")
            .arg(&config)
            .arg("--root-dir")
            .arg(&root)
            .output()
            .unwrap()
    };
    let refused = drain();
    assert_eq!(
        refused.status.code(),
        Some(2),
        "refused while the agent runs"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it first"));
    a.kill9();
    let out = drain();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stopped default/one-node1") && text.contains("stopped default/two-node1"),
        "{text}"
    );
    assert!(a.crun_list().is_empty());
    assert!(a.monitors().is_empty());
    assert!(
        a.mounts_below_base().is_empty(),
        "{:?}",
        a.mounts_below_base()
    );
    assert!(std::fs::read_dir(a.root.join("pods"))
        .unwrap()
        .next()
        .is_none());
    assert!(
        std::fs::read_dir(&a.logs).unwrap().count() == 2,
        "logs are kept"
    );
}
