//! `staticlet logs` and `/containerLogs` on real containers (issue 18): each line reaches a
//! follower as it is written, across rotation, with no polling; the kubelet's query
//! parameters; a container without logs says why.

use crate::common;

use common::status::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn logs_follow_streams_each_line_as_it_is_written() {
    let mut a = Agent::new("follow");
    a.start();
    let trigger = triggered_pod(&a, "talk");
    let file = log_file(&a, "talk");
    for args in [
        vec!["logs", "talk", "-f"],
        vec!["logs", "talk", "-c", "main", "-f"],
    ] {
        let port = format!("127.0.0.1:{}", a.port);
        let mut child = Command::new(bin())
            .args(&args)
            .args(["--status-address", &port])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut child);
        let first = rx.recv_timeout(Duration::from_secs(20));
        let second_written = std::fs::read_to_string(&file).unwrap().contains("second");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            first.as_deref(),
            Ok("first"),
            "`staticlet {}` printed nothing while the container was running",
            args.join(" ")
        );
        assert!(!second_written);
    }
    // The raw endpoint streams too (chunked), and a follower sees the next line when written.
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        s,
        "GET /containerLogs/default/talk-node1/main?follow=true HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    let mut triggered = false;
    let end = Instant::now() + Duration::from_secs(30);
    while !seen.contains("second") && Instant::now() < end {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "the follow stream ended early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if seen.contains("first") && !triggered {
            assert!(!seen.contains("second"));
            std::fs::write(trigger.join("go"), "").unwrap();
            triggered = true;
        }
    }
    assert!(seen.contains("transfer-encoding: chunked"), "{seen}");
    assert!(seen.contains("second"), "{seen}");
}

#[test]
fn follow_continues_across_rotation() {
    let mut a = Agent::new("rotate");
    let config = a.base.join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncontainerLogMaxSize: 1Ki\ncontainerLogMaxFiles: 3\n",
    )
    .unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a.start();
    let trigger = a.base.join("trigger-rot");
    std::fs::create_dir_all(&trigger).unwrap();
    // About 60 bytes per line: 120 lines rotate the 1 KiB log several times.
    a.write_manifest(
        "rot.yaml",
        &pod_yaml(
            "rot",
            &format!(
                "  volumes:\n  - {{name: t, hostPath: {{path: {}, type: Directory}}}}\n",
                trigger.display()
            ),
            "    volumeMounts:\n    - {name: t, mountPath: /trigger}\n",
            "[sh, -c, 'echo ready; while [ ! -e /trigger/go ]; do sleep 0.1; done; i=0; while [ $i -lt 120 ]; do echo line-$i; i=$((i+1)); sleep 0.02; done; exec sleep 3600']",
        ),
    );
    a.wait_running("rot", "main");
    let port = format!("127.0.0.1:{}", a.port);
    let mut child = Command::new(bin())
        .args(["logs", "rot", "-f", "--status-address", &port])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)).as_deref(),
        Ok("ready")
    );
    std::fs::write(trigger.join("go"), "").unwrap();
    let mut got = Vec::new();
    while got.len() < 120 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => got.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let want: Vec<String> = (0..120).map(|i| format!("line-{i}")).collect();
    assert_eq!(got, want, "the follower lost or reordered lines");
    let rotated = staticlet::runtime::logwriter::rotated_files(&log_file(&a, "rot"));
    assert!(!rotated.is_empty(), "the log never rotated");
}

#[test]
fn an_idle_follower_wakes_nothing() {
    let mut a = Agent::new("idle-follow");
    a.start();
    let _trigger = triggered_pod(&a, "still");
    let pid = pid(&a);
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        s,
        "GET /containerLogs/default/still-node1/main?follow=true HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("first") {
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "the follow stream ended: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    wait_quiet(pid, Duration::from_secs(10));
    // A follower that polls the file (4 times a second) would wake the agent 20 times here.
    let before = wakeups(pid);
    std::thread::sleep(Duration::from_secs(5));
    let woke = woken_between(&before, &wakeups(pid));
    eprintln!("agent wake-ups in 5 s with an idle follower: {woke}");
    assert!(
        woke < 5,
        "the agent woke {woke} times in 5 s with an idle follower"
    );
}

#[test]
fn logs_of_a_waiting_container_say_why() {
    let mut a = Agent::new("waiting");
    a.start();
    a.write_manifest(
        "nopull.yaml",
        &pod_yaml(
            "nopull",
            "",
            "    imagePullPolicy: Never\n",
            "[sleep, '3600']",
        )
        .replace(IMAGE, "localhost/not-imported:1"),
    );
    a.wait_container("nopull", "main", "waiting", |c| {
        c["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    });
    let (status, body) = get(a.port, "/containerLogs/default/nopull-node1/main").unwrap();
    let want = "container \"main\" in pod \"nopull-node1\" is waiting to start: ErrImageNeverPull";
    assert_eq!((status, body.trim()), (400, want));
    let (ok, out, err) = a.cli(&["logs", "nopull"]);
    assert!(!ok, "{out}");
    assert!(err.contains(want), "{err}");
    let (status, body) = get(a.port, "/containerLogs/default/nopull-node1/other").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("container \"other\""), "{body}");
    let (status, body) = get(a.port, "/containerLogs/default/absent/main").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("pod \"absent\""), "{body}");
}

#[test]
fn container_logs_take_the_kubelet_query_parameters() {
    let mut a = Agent::new("logquery");
    a.start();
    a.write_manifest(
        "count.yaml",
        &pod_yaml(
            "count",
            "",
            "",
            "[sh, -c, 'for i in 1 2 3 4 5; do echo n$i; done; exec sleep 3600']",
        ),
    );
    a.wait_running("count", "main");
    let path = "/containerLogs/default/count-node1/main";
    let all = wait_until("five lines", Duration::from_secs(20), || {
        get(a.port, path).filter(|(_, b)| b.contains("n5"))
    });
    assert_eq!(all, (200, "n1\nn2\nn3\nn4\nn5\n".to_string()));
    assert_eq!(
        get(a.port, &format!("{path}?tailLines=2")).unwrap().1,
        "n4\nn5\n"
    );
    assert_eq!(
        get(a.port, &format!("{path}?limitBytes=4")).unwrap().1,
        "n1\nn"
    );
    let (_, stamped) = get(a.port, &format!("{path}?timestamps=true&tailLines=1")).unwrap();
    let (ts, rest) = stamped.split_once(' ').unwrap();
    assert!(
        staticlet::sys::timefmt::parse_rfc3339(ts).is_some(),
        "{stamped}"
    );
    assert_eq!(rest, "n5\n");
    assert_eq!(
        get(a.port, &format!("{path}?sinceSeconds=3600")).unwrap().1,
        "n1\nn2\nn3\nn4\nn5\n"
    );
    let (status, body) = get(a.port, &format!("{path}?tailLines=x")).unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tailLines"), "{body}");
}
