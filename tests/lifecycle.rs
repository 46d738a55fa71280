//! Pod lifecycle races on real crun: slow starts, rapid rewrites.

use crate::common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// A container start slower than `runtimeRequestTimeout` (crun on a loaded host) is ended
/// (monitor, crun, container) and confirmed gone before the next attempt: there is never a
/// second instance of one container.
#[test]
fn a_start_slower_than_the_runtime_timeout_never_runs_twice() {
    let mut a = Agent::new("slowstart");
    let wrapper = a.base.join("slow-crun");
    let marker = a.base.join("slowed");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# The first container start hangs in the runtime for 8 s.\nfor arg in \"$@\"; do\n  if [ \"$arg\" = run ] && [ ! -e {m} ]; then touch {m}; sleep 8; fi\ndone\nexec crun \"$@\"\n",
            m = marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = a.base.join("config.yaml");
    fs::write(
        &config,
        "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nruntimeRequestTimeout: 2s\n",
    )
    .unwrap();
    a.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--runtime".into(),
        wrapper.display().to_string(),
    ];
    a.start();
    a.write_manifest("slow.yaml", &pod_yaml("slow", "", "", "[sleep, '1000']"));
    // Watch for duplicates the whole time, until the retry runs.
    let end = Instant::now() + Duration::from_secs(60);
    let mut most = 0;
    loop {
        let containers = a.crun_list().len();
        let monitors = a.monitors().len();
        most = most.max(containers).max(monitors);
        let running = a.pod("slow").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["state"]
                .get("running")
                .is_some()
        });
        if running && containers == 1 {
            break;
        }
        assert!(Instant::now() < end, "no retry ran\n{}", a.agent_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(most, 1, "never more than one instance\n{}", a.agent_log());
    assert!(
        marker.exists(),
        "the first start went through the slow runtime"
    );
    let log = a.agent_log();
    assert!(
        log.contains("has not started the container after 2s"),
        "{log}"
    );
    // The slow attempt never comes back to life: it stays one container.
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(a.crun_list().len(), 1, "{:?}", a.crun_list());
    assert_eq!(a.monitors().len(), 1);
}

/// A config tool rewriting one manifest in place, fast: every superseded version's sandbox
/// (namespace bind mounts, the shm tmpfs, its dir) is gone once the last version runs.
#[test]
fn rapid_rewrites_leave_no_sandbox_behind() {
    let mut a = Agent::new("rewrite");
    a.start();
    let file = a.manifests.join("p.yaml");
    for v in 0..40 {
        fs::write(
            &file,
            pod_yaml("p", "", "", &format!("[sleep, '{}']", 2000 + v)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(15 + (v % 7) * 20));
    }
    a.wait_container("p", "main", "the last version running", |c| {
        c["state"].get("running").is_some()
    });
    let mut last = String::new();
    let ok = wait_until_or_none(Duration::from_secs(60), || {
        let pods = a.pods();
        let items = pods["items"].as_array()?;
        let live: Vec<String> = items
            .iter()
            .map(|p| p["metadata"]["uid"].as_str().unwrap_or("").to_string())
            .collect();
        let version_ok = items.len() == 1
            && a.crun_list().len() == 1
            && items[0]["spec"]["containers"][0]["command"][1] == "2039";
        let stray: Vec<String> = a
            .mounts_below_base()
            .into_iter()
            .filter(|m| !live.iter().any(|u| m.contains(u.as_str())))
            .collect();
        let dirs: Vec<String> = fs::read_dir(a.root.join("pods"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|d| !live.contains(d))
            .collect();
        last = format!("live {live:?}, stray mounts {stray:?}, stray dirs {dirs:?}");
        (version_ok && stray.is_empty() && dirs.is_empty()).then_some(())
    });
    assert!(ok.is_some(), "{last}\n{}", a.agent_log());
}

/// Namespace and name both within Kubernetes' limits can make `<namespace>_<name>_<uid>`
/// longer than a file name may be: the container's output must still be logged and served.
#[test]
fn logs_of_a_pod_with_a_very_long_name_are_kept() {
    let mut a = Agent::new("longname");
    a.start();
    let ns = "n".repeat(63);
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(50)
    );
    let manifest = pod_yaml(
        &name,
        "",
        "",
        "[sh, -c, 'echo hello from far away; sleep 1000']",
    )
    .replace("namespace: default", &format!("namespace: {ns}"));
    a.write_manifest("long.yaml", &manifest);
    a.wait_running(&name, "main");
    let out = wait_until("the container's output", Duration::from_secs(20), || {
        let (ok, out, _) = a.cli(&["logs", "-n", &ns, &format!("{name}-node1")]);
        (ok && out.contains("hello from far away")).then_some(out)
    });
    assert_eq!(out.trim(), "hello from far away");
    let dirs: Vec<String> = fs::read_dir(&a.logs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        dirs[0].len() <= 255 && dirs[0].starts_with(&format!("{ns}_aaaa")),
        "{dirs:?}"
    );
}

fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// One pod with hundreds of containers: the agent's memory grows linearly with them (every
/// action in flight once cost a copy of the whole pod: 500 containers took 820 MB), and is
/// given back once the pod is gone.
#[test]
fn a_pod_with_hundreds_of_containers_costs_linear_memory_and_returns_it() {
    const N: usize = 200;
    let mut a = Agent::new("wide");
    a.start();
    let pid = a.child.as_ref().unwrap().id();
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kb(pid);
    let mut yaml = String::from("apiVersion: v1\nkind: Pod\nmetadata: {name: wide, namespace: default}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n");
    for i in 0..N {
        yaml.push_str(&format!(
            "  - {{name: c{i}, image: {IMAGE}, command: [sleep, '100000'], env: [{{name: PAD, value: '{}'}}]}}\n",
            "x".repeat(200)
        ));
    }
    a.write_manifest("wide.yaml", &yaml);
    let mut peak = 0;
    wait_until("every container running", Duration::from_secs(300), || {
        peak = peak.max(rss_kb(pid));
        (a.crun_list().iter().filter(|c| c.2 == "running").count() == N).then_some(())
    });
    a.remove_manifest("wide.yaml");
    wait_until("the pod gone", Duration::from_secs(300), || {
        peak = peak.max(rss_kb(pid));
        (a.crun_list().is_empty() && a.pods()["items"].as_array()?.is_empty()).then_some(())
    });
    // The heap is trimmed once the agent has been quiet for a moment after the removal.
    let after = wait_until_or_none(Duration::from_secs(20), || {
        let r = rss_kb(pid);
        (r <= before + 6 * 1024).then_some(r)
    });
    assert!(
        peak <= before + 48 * 1024,
        "{N} containers: RSS {before} kB before, peak {peak} kB"
    );
    assert!(
        after.is_some(),
        "RSS {before} kB before, {} kB after the pod went",
        rss_kb(pid)
    );
}
