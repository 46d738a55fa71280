//! Manifest files as a fleet's gateways meet them, against a real agent on real crun: files
//! built to exhaust the parser, values that try to forge log lines, writers that pause half
//! way, and typos in field names.

use crate::common;

use common::*;
use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

/// A field of `/proc/<pid>/status` in kB (`VmHWM` is the peak resident set).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (is the agent running?)"));
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field).and_then(|v| {
                v.trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// An agent that relists its directory every `relist`.
fn agent_with_relist(tag: &str, relist: &str) -> Agent {
    let mut a = Agent::new(tag);
    let config = a.base.join("config.yaml");
    fs::write(
        &config,
        format!("apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nfileCheckFrequency: {relist}\n"),
    )
    .unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a
}

/// Writes a file in one go, renamed into place.
fn put(a: &Agent, name: &str, body: &[u8]) {
    let tmp = a.base.join(format!(".{name}.tmp"));
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, a.manifests.join(name)).unwrap();
}

fn count_lines(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn huge_and_deep_manifests_cost_bounded_time_and_memory() {
    let mut a = agent_with_relist("hostile-size", "2s");
    a.start();
    a.write_manifest(
        "before.yaml",
        &pod_yaml("before", "", "", "[sleep, '1000']"),
    );
    a.wait_running("before", "main");
    let before_pid = a.crun_list()[0].1;
    let agent_pid = a.child.as_ref().unwrap().id();
    let n = 5_000_000; // just under the 10 MB cap
    let mut nested = b"a: ".to_vec();
    nested.extend(std::iter::repeat_n(b'[', n));
    nested.extend(std::iter::repeat_n(b']', n));
    let mut wide = b"[".to_vec();
    wide.extend(std::iter::repeat_n(&b"1,"[..], n - 1).flatten());
    wide.extend(b"1]");
    let mut nested_json = Vec::new();
    for _ in 0..n / 5 {
        nested_json.extend(b"{\"a\":");
    }
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let started = Instant::now();
    put(&a, "nested.yaml", &nested);
    put(&a, "wide.yaml", &wide);
    put(&a, "nested.json", &nested_json);
    put(&a, "laughs.yaml", laughs.as_bytes());
    drop((nested, wide, nested_json));
    a.write_manifest("after.yaml", &pod_yaml("after", "", "", "[sleep, '1000']"));
    wait_until(
        "the pod written after the hostile files",
        Duration::from_secs(30),
        || {
            a.pod("after")?["status"]["containerStatuses"][0]["state"]
                .get("running")
                .map(|_| ())
        },
    );
    let took = started.elapsed();
    let problems = wait_until("the four problems", Duration::from_secs(10), || {
        let p = a.http("/manifests")?;
        ["nested.yaml", "wide.yaml", "nested.json", "laughs.yaml"]
            .iter()
            .all(|f| p.contains(f))
            .then_some(p)
    });
    let peak_kb = status_kb(agent_pid, "VmHWM");
    eprintln!("hostile files handled in {took:?}; agent peak RSS {peak_kb} kB\n{problems}");
    assert!(peak_kb < 150 * 1024, "the agent's peak RSS is {peak_kb} kB");
    for what in ["nested deeper than", "more than 100000"] {
        assert!(problems.contains(what), "{what}: {problems}");
    }
    assert_eq!(
        a.crun_list()
            .iter()
            .find(|c| c.1 == before_pid)
            .map(|c| c.1),
        Some(before_pid),
        "the running pod never noticed"
    );
    assert_eq!(a.http("/healthz").as_deref(), Some("ok"));
}

#[test]
fn manifest_values_cannot_forge_log_lines() {
    let mut a = agent_with_relist("forge", "2s");
    a.start();
    let forged = |tag: &str| {
        // No '/': it must fit in a file name.
        format!("\n2026-01-01T00:00:00Z INFO  {tag}: started (pid 1, attempt 1)")
    };
    // A valid pod in a file whose name carries a line break.
    let name_a = format!("evil{}.yaml", forged("forged-a"));
    put(
        &a,
        &name_a,
        pod_yaml("evil", "", "", "[sleep, '1000']").as_bytes(),
    );
    // An invalid pod whose error names a field path carrying a line break.
    put(
        &a,
        "bad.yaml",
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  labels: {{{:?}: [1]}}\nspec:\n  containers: [{{name: main, image: {IMAGE}}}]\n",
            format!("k{}", forged("forged-b"))
        )
        .as_bytes(),
    );
    // An ignored file whose name carries a line break, and a terminal escape.
    put(&a, &format!("notes{}\x1b[2J.txt", forged("forged-c")), b"x");
    a.wait_running("evil", "main");
    let log = wait_until(
        "all three files to be handled",
        Duration::from_secs(20),
        || {
            let log = a.agent_log();
            (log.contains("forged-a") && log.contains("forged-b") && log.contains("forged-c"))
                .then_some(log)
        },
    );
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line:\n{line}\nin\n{log}"
        );
        assert!(!line.contains('\x1b'), "a raw terminal escape: {line:?}");
    }
    for tag in ["forged-a", "forged-b", "forged-c"] {
        let line = log.lines().find(|l| l.contains(tag)).unwrap();
        assert!(
            line.contains(&format!("\\n2026-01-01T00:00:00Z INFO  {tag}: started")),
            "{tag} is escaped in place: {line}"
        );
    }
    // `validate` prints one line per problem too.
    let out = std::process::Command::new(bin())
        .args(["validate", "--node-name", "node1"])
        .arg(a.manifests.join("bad.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().all(|l| !l.starts_with("2026-01-01")), "{text}");
}

const HALF: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: slow\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: localhost/staticlet-test:latest\n    command: [sh, -c, 'echo COMPLETE=$COMPLETE; sleep 1000']\n";
const REST: &str = "    env: [{name: COMPLETE, value: 'yes'}]\n";

/// The pod started from `slow.yaml` printed the complete manifest's variable, and only one
/// version of it was ever started.
fn assert_started_complete(a: &Agent) {
    a.wait_running("slow", "main");
    let uid = a.pod("slow").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = fs::read_dir(&a.logs)
        .unwrap()
        .flatten()
        .find(|d| d.file_name().to_string_lossy().ends_with(&uid))
        .expect("the pod's log directory");
    let out = wait_until("the container's output", Duration::from_secs(20), || {
        let s = fs::read_to_string(dir.path().join("main/0.log")).ok()?;
        s.contains("COMPLETE=").then_some(s)
    });
    assert!(out.contains("COMPLETE=yes"), "{out}");
    let log = a.agent_log();
    assert_eq!(
        count_lines(&log, &["default/slow-node1: new pod"]),
        1,
        "only the complete version was started\n{log}"
    );
}

#[test]
fn a_writer_pausing_past_the_settle_time_and_a_relist_is_not_read_half_way() {
    let mut a = agent_with_relist("halfway", "1s");
    a.start();
    let mut f = fs::File::create(a.manifests.join("slow.yaml")).unwrap();
    f.write_all(HALF.as_bytes()).unwrap();
    f.flush().unwrap();
    // Past the 1 s settle time and several relists.
    std::thread::sleep(Duration::from_secs(4));
    assert!(a.pod("slow").is_none(), "the half-written file was read");
    f.write_all(REST.as_bytes()).unwrap();
    drop(f);
    assert_started_complete(&a);
}

#[test]
fn a_file_open_for_writing_at_boot_waits_for_its_writer() {
    let mut a = agent_with_relist("halfboot", "1s");
    let mut f = fs::File::create(a.manifests.join("slow.yaml")).unwrap();
    f.write_all(HALF.as_bytes()).unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    a.start();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        a.pod("slow").is_none(),
        "the half-written file was read at boot"
    );
    f.write_all(REST.as_bytes()).unwrap();
    drop(f);
    assert_started_complete(&a);
}

#[test]
fn unknown_fields_are_logged_once_per_file_version() {
    let mut a = agent_with_relist("unknown", "1s");
    a.start();
    let typo = pod_yaml("typo", "", "    comand: [sleep, '5']\n", "[sleep, '1000']");
    a.write_manifest("typo.yaml", &typo);
    a.wait_running("typo", "main");
    // Several relists, and a touch that makes inotify report the file again.
    std::thread::sleep(Duration::from_millis(2500));
    let path = a.manifests.join("typo.yaml");
    let now = std::time::SystemTime::now();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(now)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let needle = [
        path.to_str().unwrap(),
        "spec.containers[0].comand",
        "unknown field",
    ];
    let log = a.agent_log();
    assert_eq!(count_lines(&log, &needle), 1, "{log}");
    // A new version of the file is a new warning.
    a.write_manifest("typo.yaml", &typo.replace("'1000'", "'2000'"));
    wait_until("the new version's warning", Duration::from_secs(20), || {
        (count_lines(&a.agent_log(), &needle) == 2).then_some(())
    });
}
