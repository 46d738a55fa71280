//! `staticlet exec` and `staticlet describe pod` on the gateway, with real crun containers
//! and no API server: exec runs in the container's namespaces and cgroup with its
//! environment, passes stdin (`-i`), a terminal (`-t`) and the exit code through; describe
//! shows containers, states, restarts, volumes and the pod's events.

use crate::common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `staticlet exec ARGS` against the agent: (exit code, stdout, stderr).
fn exec(a: &Agent, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let port = format!("127.0.0.1:{}", a.port);
    let mut child = Command::new(bin())
        .arg("exec")
        .args(["--status-address", &port, "--root-dir"])
        .arg(&a.root)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exec_enters_the_container_and_passes_stdin_a_tty_and_the_exit_code() {
    let mut a = Agent::new("exec");
    a.start();
    let side = format!(
        "    env: [{{name: GREETING, value: hi}}]\n  - name: side\n    image: {IMAGE}\n    command: [sleep, '100000']\n"
    );
    a.write_manifest("web.yaml", &pod_yaml("web", "", &side, "[sleep, '100000']"));
    let main = a.wait_running("web", "main");
    a.wait_running("web", "side");

    // The container's environment, and its exit code through.
    let (code, out, err) = exec(
        &a,
        &["web", "--", "sh", "-c", "echo $GREETING; exit 7"],
        None,
    );
    assert_eq!((code, out.as_str()), (7, "hi\n"), "{err}");
    assert!(
        err.contains("Defaulted container \"main\" out of: main, side"),
        "{err}"
    );

    // Its namespaces and its cgroup.
    let id = main["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("crun://")
        .to_string();
    let pid = a.crun_list().into_iter().find(|c| c.0 == id).unwrap().1;
    let host_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let (code, out, err) = exec(
        &a,
        &["web", "-c", "main", "--", "readlink", "/proc/self/ns/net"],
        None,
    );
    assert_eq!((code, out.trim()), (0, host_net.to_str().unwrap()), "{err}");
    let uid = a.pod("web").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, _) = exec(
        &a,
        &["web", "-c", "side", "--", "cat", "/proc/self/cgroup"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains(&format!("/pod{uid}/side-0")), "{out}");

    // stdin with -i only.
    let (code, out, _) = exec(&a, &["web", "-i", "--", "cat"], Some("piped data\n"));
    assert_eq!((code, out.as_str()), (0, "piped data\n"));
    let (_, out, _) = exec(&a, &["web", "--", "cat"], Some("not passed\n"));
    assert_eq!(out, "");

    // A terminal when there is one to give (script(1) makes one), kubectl's warning when not.
    let port = format!("127.0.0.1:{}", a.port);
    let line = format!(
        "{} exec --status-address {port} --root-dir {} -i -t web -- sh -c 'tty; exit 3'",
        bin(),
        a.root.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert_eq!(out.status.code(), Some(3), "{text}");
    let (code, out, err) = exec(&a, &["web", "-i", "-t", "--", "tty"], Some(""));
    assert!(err.contains("Unable to use a TTY"), "{err}");
    assert_eq!((code, out.trim()), (1, "not a tty"));

    // What cannot be done is said, with kubectl's exit codes.
    let (code, _, err) = exec(&a, &["web", "-c", "nope", "--", "true"], None);
    assert_eq!(code, 1);
    assert!(err.contains("choose one of: main, side"), "{err}");
    let (code, _, err) = exec(&a, &["nosuch", "--", "true"], None);
    assert_eq!(code, 1);
    assert!(err.contains("pod \"nosuch\" not found"), "{err}");
    let (code, _, err) = exec(&a, &["web"], None);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn describe_shows_containers_states_volumes_and_events() {
    let mut a = Agent::new("describe");
    a.start();
    let data = a.base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let spec = format!(
        "  volumes:\n  - name: data\n    hostPath: {{path: {}}}\n",
        data.display()
    );
    let mounts = "    volumeMounts: [{name: data, mountPath: /data}]\n";
    a.write_manifest(
        "crash.yaml",
        &pod_yaml("crash", &spec, mounts, "[sh, -c, 'sleep 1; exit 3']"),
    );
    a.wait_container("crash", "main", "restarted twice", |c| {
        c["restartCount"].as_u64().unwrap_or(0) >= 2
    });
    let out = wait_until_or_none(Duration::from_secs(20), || {
        let (ok, out, _) = a.cli(&["describe", "pod", "crash"]);
        (ok && out.contains("Back-off restarting failed container")).then_some(out)
    })
    .unwrap_or_else(|| a.cli(&["describe", "pod", "crash"]).1);
    for want in [
        "Name:         crash-node1",
        "Namespace:    default",
        "Node:         node1/",
        "Containers:\n  main:\n    Container ID:",
        format!("Image:          {IMAGE}").as_str(),
        "Exit Code:    3",
        "Last State:     Terminated",
        "    Mounts:         /data from data (rw)",
        "Conditions:",
        "  PodScheduled      True",
        "Volumes:\n  data:\n    Type:          HostPath (bare host directory volume)",
        "Events:",
        "Container image \"localhost/staticlet-test:latest\" already present on machine",
        "Started container main",
        "Back-off restarting failed container",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    assert!(out.contains(" (x"), "repeats are counted:\n{out}");
    let (ok, _, err) = a.cli(&["describe", "pod", "nosuch"]);
    assert!(!ok && err.contains("pod \"nosuch\" not found"), "{err}");
    let (ok, _, err) = a.cli(&["describe", "nodes"]);
    assert!(!ok && err.contains("only `describe pod NAME`"), "{err}");
}
