//! The first five minutes: `examples/demo --check` on this build, as a new user runs it
//! (with the test binary instead of a release build, its own directory and status port).
//! It shows the status screen only once every example pod runs, and checks what it shows.

use crate::common;

use common::*;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_shows_the_example_pods_running() {
    require_root_and_crun();
    let dir = unique_dir("demo");
    let (out_file, err_file) = (dir.join("demo.out"), dir.join("demo.err"));
    let mut child = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo"))
        .arg("--check")
        .env("STATICLET_BIN", bin())
        .env("STATICLET_DEMO_DIR", &dir)
        .env("STATICLET_DEMO_ADDR", format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(File::create(&out_file).unwrap())
        .stderr(File::create(&err_file).unwrap())
        .spawn()
        .expect("running examples/demo");
    // --check ends by itself (its own bound is 90 s); a demo that waits for Ctrl-C instead
    // gets one, so the test fails rather than hangs and the demo still cleans up.
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{stdout}\n{stderr}"
    );
    // The screen: both pods Running with every container ready, the web page, the
    // sidecar's log; nothing of "not found" or an empty table.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("NAMESPACE"))
        .take_while(|l| !l.is_empty())
        .collect();
    for pod in ["sidecar", "web"] {
        let row = table
            .iter()
            .find(|r| {
                r.split_whitespace()
                    .nth(1)
                    .is_some_and(|n| n.starts_with(pod))
            })
            .unwrap_or_else(|| panic!("no row for {pod}:\n{stdout}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(f[3], "Running", "{row}");
        let (ready, total) = f[2].split_once('/').unwrap();
        assert_eq!(ready, total, "{row}");
    }
    assert!(stdout.contains("hello from a static pod"), "{stdout}");
    assert!(
        stdout.contains("prepared by the init container"),
        "{stdout}"
    );
    assert!(!stderr.contains("not found"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
