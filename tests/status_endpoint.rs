//! The status endpoint against hostile clients, as real TCP clients on loopback against a
//! real agent (issue 10): bounded request heads, bodies never read, bounded connections and
//! time per request, and log followers that go with their client.

use crate::common;

use common::status::*;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn huge_content_length_is_refused_quickly_and_memory_stays_small() {
    let mut a = Agent::new("huge-cl");
    a.start();
    let pid = pid(&a);
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\nabc"
    )
    .unwrap();
    let start = Instant::now();
    let answer = read_some(&mut s, Duration::from_secs(5));
    let took = start.elapsed();
    assert_healthy(&a, "after a huge Content-Length");
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "a request with a 1 PB body must be refused, got {answer:?}"
    );
    assert!(took < Duration::from_secs(5), "{answer:?} after {took:?}");
    // Other methods are refused before their body is read, too.
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    write!(
        s,
        "POST /pods HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n"
    )
    .unwrap();
    let answer = read_some(&mut s, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer:?}");
    assert!(rss_mb(pid) < 64, "agent RSS {} MB", rss_mb(pid));
}

#[test]
fn a_200_mb_header_line_is_refused_and_memory_stays_bounded() {
    let mut a = Agent::new("huge-header");
    a.start();
    let pid = pid(&a);
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    let mut peak = 0;
    for _ in 0..200 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += 1;
        peak = peak.max(rss_mb(pid));
    }
    let answer = read_some(&mut s, Duration::from_secs(5));
    assert!(
        sent < 200 || answer.starts_with("HTTP/1.1 431"),
        "the server read all 200 MB of one header line: {answer:?}"
    );
    peak = peak.max(rss_mb(pid));
    assert!(peak < 64, "agent RSS reached {peak} MB after {sent} MB");
    assert_healthy(&a, "after a 200 MB header line");
}

#[test]
fn a_thousand_idle_connections_do_not_starve_new_clients() {
    let mut a = Agent::new("idle-conns");
    a.start();
    let pid = pid(&a);
    let threads_before = proc_status(pid, "Threads");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], a.port));
    let mut idle = Vec::new();
    for _ in 0..1200 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            idle.push(s);
        }
    }
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    // One of them starts a request and never finishes it (slowloris).
    let _ = idle[0].write_all(b"GET /healthz HTTP/1.1\r\nHost:");
    assert_healthy(&a, "with 1,200 idle connections open");
    let threads = proc_status(pid, "Threads");
    assert!(
        threads <= threads_before + 4,
        "agent threads went from {threads_before} to {threads}"
    );
    let open = fds(pid).iter().filter(|f| f.starts_with("socket:")).count();
    assert!(open <= 80, "the agent holds {open} sockets");
    // Many new clients in a row still get answers while the idle ones are held open.
    for i in 0..20 {
        assert_healthy(&a, &format!("request {i} with idle connections open"));
    }
    drop(idle);
}

#[test]
fn a_slow_request_head_is_cut_off() {
    let mut a = Agent::new("slow-head");
    a.start();
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost:").unwrap();
    let start = Instant::now();
    let answer = read_some(&mut s, Duration::from_secs(30));
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "a request head that never ends held its connection for {took:?} ({answer:?})"
    );
}

#[test]
fn a_client_that_stops_reading_releases_its_connection_and_file() {
    let mut a = Agent::new("no-read");
    let config = a.base.join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncontainerLogMaxSize: 64Mi\n",
    )
    .unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a.start();
    // About 8 MB of output: more than the socket buffers hold.
    a.write_manifest(
        "big.yaml",
        &pod_yaml(
            "big",
            "",
            "",
            "[sh, -c, 'yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n 110000; echo done; exec sleep 3600']",
        ),
    );
    a.wait_running("big", "main");
    let file = log_file(&a, "big");
    wait_until("the whole log", Duration::from_secs(60), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.ends_with("done\n"))
    });
    let pid = pid(&a);
    let file = file.to_string_lossy().into_owned();
    let s = small_window_connect(a.port);
    (&s).write_all(b"GET /containerLogs/default/big-node1/main HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("the answer to start", Duration::from_secs(10), || {
        fds(pid).contains(&file).then_some(())
    });
    // The client never reads: the server gives up on it (after WRITE_STALL, 30 s, without
    // progress; the kernel's buffers take a while to fill first on a loaded machine).
    wait_until(
        "the server to drop a client that reads nothing",
        Duration::from_secs(120),
        || (!fds(pid).contains(&file)).then_some(()),
    );
    assert_healthy(&a, "after a client that stopped reading");
    drop(s);
}

#[test]
fn pipelined_follow_and_healthz_do_not_hang_other_clients() {
    let mut a = Agent::new("pipeline");
    a.start();
    let _trigger = triggered_pod(&a, "quiet");
    let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
    s.write_all(
        b"GET /containerLogs/default/quiet-node1/main?follow=true HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    for i in 0..5 {
        assert_healthy(&a, &format!("request {i} with a pipelined follower open"));
        let pods = get(a.port, "/pods");
        assert!(
            pods.as_ref()
                .is_some_and(|(c, b)| *c == 200 && b.contains("quiet-node1")),
            "{pods:?}"
        );
    }
    drop(s);
}

#[test]
fn an_abandoned_follower_leaves_no_thread_or_fd() {
    let mut a = Agent::new("abandon");
    a.start();
    let _trigger = triggered_pod(&a, "idle");
    let pid = pid(&a);
    let file = log_file(&a, "idle");
    let file = file.to_string_lossy().into_owned();
    assert_healthy(&a, "before");
    let threads_before = proc_status(pid, "Threads");
    let fds_before = fds(pid).len();
    // The last one pipelines another request behind its follow, so the server has bytes
    // buffered and must still notice that the client left.
    for pipelined in ["", "", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut s = TcpStream::connect(("127.0.0.1", a.port)).unwrap();
        write!(
            s,
            "GET /containerLogs/default/idle-node1/main?follow=true HTTP/1.1\r\nHost: x\r\n\r\n{pipelined}"
        )
        .unwrap();
        wait_until(
            "the follower to open the log",
            Duration::from_secs(10),
            || fds(pid).contains(&file).then_some(()),
        );
        drop(s);
        wait_until(
            &format!("an abandoned follower (pipelined: {pipelined:?}) to release its file, socket and thread"),
            Duration::from_secs(5),
            || {
                let now = fds(pid);
                let threads = proc_status(pid, "Threads");
                (!now.contains(&file)
                    && now.len() <= fds_before
                    && threads <= threads_before)
                    .then_some(())
            },
        );
    }
}
