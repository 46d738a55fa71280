//! Looking at a running agent from outside, for the status endpoint and log tests: its
//! memory, threads, file descriptors and wake-ups from /proc, plain HTTP requests, and pods
//! whose output the test controls.

use super::*;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub fn pid(a: &Agent) -> u32 {
    a.child.as_ref().expect("the agent runs").id()
}

/// A number field of /proc/<pid>/status (VmRSS in kB, Threads).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (did the agent die?)"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

pub fn rss_mb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS") / 1024
}

/// Where the agent's open file descriptors point.
pub fn fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Status code and body of a GET on a fresh connection, or None when nothing answered in 5 s.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().ok()?))
}

pub fn assert_healthy(a: &Agent, what: &str) {
    let start = Instant::now();
    let answer = get(a.port, "/healthz");
    assert_eq!(
        answer,
        Some((200, "ok".to_string())),
        "{what}: /healthz on a new connection did not answer (after {:?})",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{what}: /healthz took {:?}",
        start.elapsed()
    );
}

/// Reads what the server sends until it closes, errs, or `timeout` passes.
pub fn read_some(s: &mut TcpStream, timeout: Duration) -> String {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pod whose container logs `first`, waits for `<base>/trigger/go`, logs `second`, then
/// sleeps: the test decides when the second line is written.
pub fn triggered_pod(a: &Agent, name: &str) -> std::path::PathBuf {
    let trigger = a.base.join(format!("trigger-{name}"));
    std::fs::create_dir_all(&trigger).unwrap();
    a.write_manifest(
        &format!("{name}.yaml"),
        &pod_yaml(
            name,
            &format!(
                "  volumes:\n  - {{name: t, hostPath: {{path: {}, type: Directory}}}}\n",
                trigger.display()
            ),
            "    volumeMounts:\n    - {name: t, mountPath: /trigger}\n",
            "[sh, -c, 'echo first; while [ ! -e /trigger/go ]; do sleep 0.1; done; echo second; exec sleep 3600']",
        ),
    );
    a.wait_running(name, "main");
    trigger
}

pub fn log_file(a: &Agent, pod: &str) -> std::path::PathBuf {
    let p = a.pod(pod).unwrap();
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    a.logs
        .join(format!("default_{pod}-{}_{uid}/main/0.log", a.node))
}

/// Lines a child writes on stdout, passed on by a reader thread so the test can wait with
/// a bound.
pub fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A connection whose receive buffer stays small (no autotuning), so a server that writes
/// to a client that does not read soon has to wait.
pub fn small_window_connect(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let r = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Voluntary context switches of all the agent's threads: how often it woke up.
/// Voluntary context switches of each of the process's threads, by thread id.
pub fn wakeups(pid: u32) -> std::collections::HashMap<String, u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/task: {e}"))
        .flatten()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let n = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())?;
            Some((t.file_name().to_string_lossy().to_string(), n))
        })
        .collect()
}

/// Waits (at most `bound`) until the process has had a second with at most one wake-up, so
/// that what a just-started pod still sets off (its start's pool workers, the manifest's
/// settle recheck) is over before an idle window is measured. A process that never quiets
/// down is left to the measurement that follows to fail.
pub fn wait_quiet(pid: u32, bound: std::time::Duration) {
    let end = std::time::Instant::now() + bound;
    let mut before = wakeups(pid);
    while std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = wakeups(pid);
        if woken_between(&before, &now) <= 1 {
            return;
        }
        before = now;
    }
}

/// How often the process's threads woke between two [`wakeups`] samples: threads that ended
/// meanwhile (a pool worker going idle) count nothing, threads that began count whole.
pub fn woken_between(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
}
