//! Fault injection, bounded in time and on loopback only: the agent killed with SIGKILL
//! during churn and while it writes its state and the URL cache, a hostile manifest
//! directory, randomised (fuzz-style) manifests and image layers, and abusive containers.

use crate::common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A small deterministic PRNG (xorshift), so every run injects the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Every JSON file staticlet keeps must parse completely, whenever it was killed.
fn check_state_files(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if name != "rootfs" && name != "upper" && name != "crun" && name != "blobs" {
                    stack.push(p);
                }
            } else if name.ends_with(".json") && !name.starts_with('.') {
                let bytes = fs::read(&p).unwrap();
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("{} is half-written: {e}", p.display()));
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    let meta = root.join("url-cache/meta.json");
    if meta.exists() {
        let m: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
        let body = root
            .join("url-cache")
            .join(format!("body.{}", m["sha256"].as_str().unwrap()));
        assert!(body.exists(), "the cached body named by meta.json exists");
    }
}

/// A plain-HTTP manifest server whose PodList changes on every request.
fn churning_url_server() -> (u16, Arc<Mutex<u32>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let n = Arc::new(Mutex::new(0u32));
    let counter = n.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let v = {
                let mut g = counter.lock().unwrap();
                *g += 1;
                *g
            };
            let body = format!(
                r#"{{"apiVersion":"v1","kind":"PodList","items":[{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"url-pod"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{IMAGE}","command":["sleep","{}"]}}]}}}}]}}"#,
                1000 + v % 2
            );
            let _ = req.respond(tiny_http::Response::from_string(body));
        }
    });
    (port, n)
}

#[test]
fn sigkill_during_churn_converges_with_no_duplicates_and_no_orphans() {
    let mut a = Agent::new("churn");
    let (url_port, requests) = churning_url_server();
    let config = a.base.join("config.yaml");
    fs::write(&config, "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nhttpCheckFrequency: 1s\n").unwrap();
    a.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--manifest-url".into(),
        format!("http://127.0.0.1:{url_port}/pods"),
    ];
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut version: BTreeMap<String, u32> = BTreeMap::new();
    // Every pod UID this agent ever had on disk, to tell its cgroups from other tests'.
    let mut seen_uids: std::collections::HashSet<String> = Default::default();
    let manifest = |name: &str, v: u32| {
        pod_yaml(name, "", "", &format!("[sleep, '{}']", 1000 + v)).replace(
            "terminationGracePeriodSeconds: 1",
            "terminationGracePeriodSeconds: 0",
        )
    };
    for round in 0..6 {
        a.start();
        for _ in 0..8 {
            let name = format!("p{:02}", rng.below(20));
            match (version.get(&name).copied(), rng.below(3)) {
                (Some(_), 0) => {
                    a.remove_manifest(&format!("{name}.yaml"));
                    version.remove(&name);
                }
                (v, _) => {
                    let v = v.map_or(0, |v| v + 1);
                    a.write_manifest(&format!("{name}.yaml"), &manifest(&name, v));
                    version.insert(name, v);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300 + rng.below(1500)));
        a.kill9();
        check_state_files(&a.root);
        seen_uids.extend(
            fs::read_dir(a.root.join("pods"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string()),
        );
        assert!(round < 6);
    }
    assert!(
        *requests.lock().unwrap() > 3,
        "the URL was polled while the agent churned"
    );
    a.start();
    let expected: Vec<String> = version
        .keys()
        .map(|n| format!("{n}-node1"))
        .chain(["url-pod-node1".to_string()])
        .collect();
    wait_until(
        &format!("convergence to {expected:?}\n{}", a.agent_log()),
        Duration::from_secs(120),
        || {
            let pods = a.pods();
            let items = pods["items"].as_array()?.clone();
            let mut names: Vec<String> = items
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
                .collect();
            names.sort();
            let mut want = expected.clone();
            want.sort();
            let all_running = items.iter().all(|p| {
                p["status"]["containerStatuses"][0]["state"]
                    .get("running")
                    .is_some()
            });
            let containers = a.crun_list();
            (names == want && all_running && containers.len() == want.len()).then_some(())
        },
    );
    // The file pods run the last version written, exactly once each.
    let containers = a.crun_list();
    for (name, v) in &version {
        let pod = a.pod(name).unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
        let mine: Vec<_> = containers
            .iter()
            .filter(|(id, _, _)| id.starts_with(&uid[..12]))
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{name}: one container, no duplicate: {containers:?}"
        );
        let cmdline = fs::read_to_string(format!("/proc/{}/cmdline", mine[0].1)).unwrap();
        assert!(
            cmdline.contains(&format!("{}", 1000 + v)),
            "{name} runs version {v}: {cmdline:?}"
        );
    }
    // No orphans: monitors, pod dirs, instance dirs, mounts and cgroups belong to live pods.
    wait_until(
        "the exit records to be processed",
        Duration::from_secs(20),
        || {
            fs::read_dir(a.root.join("exits"))
                .ok()?
                .next()
                .is_none()
                .then_some(())
        },
    );
    // Teardowns of superseded versions may still be finishing: wait for the state to
    // converge (bounded), then report what is left if it does not.
    let orphans = || -> Result<(), String> {
        let live: Vec<String> = a.pods()["items"]
            .as_array()
            .ok_or("the agent does not answer /pods")?
            .iter()
            .map(|p| p["metadata"]["uid"].as_str().unwrap_or("").to_string())
            .collect();
        let monitors = a.monitors().len();
        if monitors != live.len() {
            return Err(format!("{monitors} monitors for {} containers", live.len()));
        }
        let mut dirs: Vec<String> = fs::read_dir(a.root.join("pods"))
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        dirs.sort();
        let mut want = live.clone();
        want.sort();
        if dirs != want {
            return Err(format!("pod dirs {dirs:?}, live pods {want:?}"));
        }
        for uid in &live {
            let instances: Vec<PathBuf> =
                fs::read_dir(a.root.join("pods").join(uid).join("containers/main"))
                    .map_err(|e| format!("{uid}: {e}"))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect();
            if instances.len() != 1 {
                return Err(format!("{uid}: bundle dirs {instances:?}"));
            }
        }
        for m in a.mounts_below_base() {
            if !live.iter().any(|u| m.contains(u.as_str())) {
                return Err(format!("orphaned mount {m}"));
            }
        }
        for cg in staticlet::sys::host::cgroup_dirs(&a.cgroup_root()) {
            for e in fs::read_dir(&cg).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                // Other test agents run beside this one: only this agent's pods matter.
                if let Some(uid) = n.strip_prefix("pod").filter(|u| seen_uids.contains(*u)) {
                    if !live.contains(&uid.to_string()) {
                        return Err(format!("orphaned cgroup {}", e.path().display()));
                    }
                }
            }
        }
        Ok(())
    };
    let mut last = String::new();
    let converged = wait_until_or_none(Duration::from_secs(60), || match orphans() {
        Ok(()) => Some(()),
        Err(e) => {
            last = e;
            None
        }
    });
    assert!(
        converged.is_some(),
        "no convergence: {last}\n{}",
        a.agent_log()
    );
    check_state_files(&a.root);
}

#[test]
fn a_hostile_manifest_directory_never_takes_the_agent_down() {
    let mut a = Agent::new("abuse");
    let config = a.base.join("config.yaml");
    fs::write(&config, "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nfileCheckFrequency: 2s\n").unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a.start();
    a.write_manifest(
        "healthy.yaml",
        &pod_yaml("healthy", "", "", "[sleep, '1000']"),
    );
    a.wait_running("healthy", "main");
    let healthy_pid = a.crun_list()[0].1;
    let agent_pid = a.child.as_ref().unwrap().id();
    let m = a.manifests.clone();
    fs::write(m.join("big.yaml"), vec![b'#'; 50 * 1024 * 1024]).unwrap();
    fs::write(
        m.join("garbage.yaml"),
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    std::os::unix::fs::symlink("loop.yaml", m.join("loop.yaml")).unwrap();
    let fifo = std::ffi::CString::new(m.join("fifo.yaml").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for leftover in [
        ".healthy.yaml.swp",
        "healthy.yaml~",
        "healthy.yaml.bak",
        "4913",
    ] {
        fs::write(m.join(leftover), "garbage: [").unwrap();
    }
    // A slow writer: half a manifest stays on disk for a while before the rest arrives.
    let mut slow = fs::File::create(m.join("slow.yaml")).unwrap();
    use std::io::Write;
    slow.write_all(b"apiVersion: v1\nkind: Pod\nmetadata: {name: slow}\nspec:\n  contai")
        .unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = rss_kb(agent_pid);
    // Files appearing and disappearing, a thousand times.
    for i in 0..1000 {
        let tmp = a.base.join(".flicker.tmp");
        fs::write(&tmp, format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: flicker}}\nspec: {{containers: [{{name: c, image: x, command: [sleep, '{i}']}}]}}\n")).unwrap();
        fs::rename(&tmp, m.join("flicker.yaml")).unwrap();
        fs::remove_file(m.join("flicker.yaml")).unwrap();
    }
    slow.write_all(
        &format!("ners: [{{name: main, image: {IMAGE}, command: [sleep, '1000']}}]\n").into_bytes(),
    )
    .unwrap();
    drop(slow);
    a.wait_running("slow", "main");
    std::thread::sleep(Duration::from_secs(5));
    let rss_after = rss_kb(agent_pid);
    assert_eq!(a.http("/healthz").as_deref(), Some("ok"), "the agent is up");
    assert_eq!(
        a.crun_list()
            .iter()
            .find(|(_, pid, _)| *pid == healthy_pid)
            .map(|c| c.1),
        Some(healthy_pid),
        "the healthy pod never noticed"
    );
    assert!(
        rss_after < rss_before + 2048,
        "memory stays flat: {rss_before} kB -> {rss_after} kB"
    );
    assert!(a.pod("flicker").is_none());
    let problems = a.http("/manifests").unwrap();
    let log = a.agent_log();
    for (file, what) in [
        ("big.yaml", "larger than 10 MB"),
        ("garbage.yaml", "cannot parse"),
        ("loop.yaml", "symbolic links"),
        ("fifo.yaml", "not a regular file"),
    ] {
        assert!(
            problems.contains(file) && problems.contains(what),
            "{file}: {what}\n{problems}"
        );
        let reports = log
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&format!("{}: ", m.join(file).display())))
            .count();
        assert_eq!(reports, 1, "{file} is reported once\n{log}");
    }
    let ignored = log
        .lines()
        .filter(|l| l.contains("ignoring") && l.contains("healthy.yaml~"))
        .count();
    assert_eq!(ignored, 1, "leftovers are reported once");
}

#[test]
fn permission_denied_is_reported_not_fatal() {
    // Root reads any file, so take the capabilities that allow it away, as for an unprivileged
    // reader, and read the directory exactly as `run` does (through `validate`).
    let have_setpriv = std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok();
    assert!(have_setpriv, "setpriv (util-linux) is needed");
    let dir = unique_dir("eacces");
    fs::write(dir.join("ok.yaml"), pod_yaml("ok", "", "", "[sleep, '1']")).unwrap();
    fs::write(
        dir.join("secret.yaml"),
        pod_yaml("secret", "", "", "[sleep, '1']"),
    )
    .unwrap();
    fs::set_permissions(
        dir.join("secret.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ])
        .arg(bin())
        .args(["validate", "--node-name", "n1"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("secret.yaml: (file): cannot read: Permission denied"),
        "{text}"
    );
    let _ = fs::remove_dir_all(dir);
}

fn cgroup_file(a: &Agent, pod: &str, controller: &str, file: &str) -> Option<String> {
    let p = a.pod(pod)?;
    let uid = p["metadata"]["uid"].as_str()?.to_string();
    let id = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()?
        .trim_start_matches("crun://")
        .to_string();
    let attempt = id.rsplit('-').next()?;
    let rel = format!("{}/pod{uid}/main-{attempt}", a.cgroup_root());
    staticlet::sys::host::controller_dirs(&rel, controller)
        .into_iter()
        .find_map(|d| fs::read_to_string(d.join(file)).ok())
}

#[test]
fn abusive_containers_are_contained() {
    let mut a = Agent::new("contain");
    let config = a.base.join("config.yaml");
    fs::write(&config, "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\npodPidsLimit: 64\ncontainerLogMaxSize: 64Ki\ncontainerLogMaxFiles: 2\n").unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a.start();
    // The bombing shell dies when fork fails; its parent then waits on a FIFO (no fork needed),
    // so the container keeps running with its cgroup full.
    a.write_manifest(
        "bomb.yaml",
        &pod_yaml(
            "bomb",
            "",
            "",
            "[sh, -c, 'mkfifo /tmp/f; sh -c \"while true; do sleep 100 & done\"; read x < /tmp/f']",
        ),
    );
    a.write_manifest(
        "chatty.yaml",
        &pod_yaml(
            "chatty",
            "",
            "",
            "[sh, -c, 'yes \"a line of log output that goes on and on\"']",
        ),
    );
    a.wait_running("bomb", "main");
    a.wait_running("chatty", "main");
    // The bomb's shell dies when fork fails and is restarted; whichever instance runs, its
    // cgroup allows 64 processes, has hit that limit, and holds no more.
    let (max, events, current) = wait_until(
        "a fork bomb that hit its limit",
        Duration::from_secs(30),
        || {
            let max = cgroup_file(&a, "bomb", "pids", "pids.max")?;
            let events = cgroup_file(&a, "bomb", "pids", "pids.events")?;
            let current: u64 = cgroup_file(&a, "bomb", "pids", "pids.current")?
                .trim()
                .parse()
                .ok()?;
            let hits: u64 = events.split_whitespace().nth(1)?.parse().ok()?;
            (hits > 0).then_some((max, hits, current))
        },
    );
    assert_eq!(max.trim(), "64");
    assert!(
        current <= 64,
        "the fork bomb is capped: {current} processes ({events} refused forks)"
    );
    std::thread::sleep(Duration::from_secs(3));
    let chatty = a.pod("chatty").unwrap();
    let dir = a.logs.join(format!(
        "default_chatty-node1_{}/main",
        chatty["metadata"]["uid"].as_str().unwrap()
    ));
    // The writer never stops: a listing may fall between its rename of the full file and
    // the pruning that follows (microseconds). Bounded means: some listing within a few
    // tries is within bounds; without rotation or pruning none ever is.
    let listing = || -> Vec<(String, u64)> {
        fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        Some((
                            e.file_name().to_string_lossy().to_string(),
                            e.metadata().ok()?.len(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let bounded = |files: &Vec<(String, u64)>| {
        files.len() <= 2 && files.iter().map(|f| f.1).sum::<u64>() <= 2 * 64 * 1024 + 16 * 1024
    };
    let mut files = listing();
    for _ in 0..5 {
        if bounded(&files) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        files = listing();
    }
    assert!(
        bounded(&files),
        "rotation keeps at most 2 files and the disk bounded: {files:?}"
    );
    // The current file may have just been rotated (and be empty): the output is in one of them.
    wait_until(
        "the chatty container's output in its logs",
        Duration::from_secs(20),
        || {
            listing()
                .iter()
                .any(|(name, _)| {
                    fs::read_to_string(dir.join(name))
                        .is_ok_and(|t| t.contains("a line of log output"))
                })
                .then_some(())
        },
    );
    assert_eq!(a.http("/healthz").as_deref(), Some("ok"));
}
