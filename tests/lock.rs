//! One agent per root dir, a drain that cannot break a live agent, and cgroups of each
//! agent's own (issues 11 and 18): real agents, real crun, real cgroups and mounts.

use crate::common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Waits (bounded) for a child to exit; kills it and fails when it does not.
fn wait_exit(child: &mut Child, what: &str, bound: Duration) -> ExitStatus {
    let end = Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent_pid(a: &Agent) -> u32 {
    a.child.as_ref().expect("the agent runs").id()
}

fn uid_of(a: &Agent, pod: &str) -> String {
    a.pod(pod).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The crun id and host pid of a pod's running `main` container.
fn main_container(a: &Agent, pod: &str) -> (String, i32) {
    let status = a.wait_running(pod, "main");
    let id = status["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("crun://")
        .to_string();
    let pid = a
        .crun_list()
        .into_iter()
        .find(|(i, _, _)| *i == id)
        .unwrap_or_else(|| panic!("{id} is not in crun list: {:?}", a.crun_list()))
        .1;
    (id, pid as i32)
}

fn alive(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

fn drain(root: &Path) -> Output {
    Command::new(bin())
        .arg("drain")
        .arg("--root-dir")
        .arg(root)
        .output()
        .unwrap()
}

/// Starts a container in the agent's crun root that no pod record knows of (a busybox shell
/// that exits on SIGTERM); returns its pid.
fn stray_container(a: &Agent, id: &str) -> i32 {
    let bundle = a.base.join(format!("bundle-{id}"));
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let spec = Command::new("crun")
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(spec.status.success(), "crun spec: {spec:?}");
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] =
        serde_json::json!(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]);
    config["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    config["linux"]["cgroupsPath"] = format!("{}/{id}", a.cgroup_root()).into();
    fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let state = a.root.join("crun");
    fs::create_dir_all(&state).unwrap();
    // The container inherits crun's stdio: pipes would never see EOF.
    let errors = bundle.join("crun.err");
    let status = Command::new("crun")
        .arg("--root")
        .arg(&state)
        .args(["run", "-d", "--bundle"])
        .arg(&bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&errors).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "crun run: {}",
        fs::read_to_string(&errors).unwrap_or_default()
    );
    let pid = a
        .crun_list()
        .into_iter()
        .find(|(i, _, s)| i == id && s == "running")
        .unwrap_or_else(|| panic!("{id} does not run: {:?}", a.crun_list()))
        .1 as i32;
    assert!(alive(pid));
    pid
}

/// Waits for the end of the `n`th startup sweep in the agent's log (which each start of
/// the agent appends to).
fn wait_sweep(a: &Agent, n: usize) {
    wait_until(
        &format!("startup sweep {n}\n{}", a.agent_log()),
        Duration::from_secs(60),
        || (a.agent_log().matches("startup sweep done").count() >= n).then_some(()),
    );
}

/// Processes other than the agent that have `path` open.
fn holders_of(path: &Path, except: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid as u32 == except {
            continue;
        }
        for fd in fs::read_dir(e.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if fs::read_link(fd.path()).is_ok_and(|t| t == path) {
                out.push(pid);
            }
        }
    }
    out
}

#[test]
fn a_second_agent_on_the_same_root_dir_is_refused_and_the_lock_dies_with_the_agent() {
    let mut a = Agent::new("lock-two");
    a.start();
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '1000']"));
    let (id, pid) = main_container(&a, "web");
    let mut second = Command::new(bin())
        .arg("run")
        .arg("--pod-manifest-path")
        .arg(&a.manifests)
        .arg("--root-dir")
        .arg(&a.root)
        .arg("--pod-logs-dir")
        .arg(&a.logs)
        .args([
            "--status-address",
            &format!("127.0.0.1:{}", free_port()),
            "--node-name",
            &a.node,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut second, "the second agent", Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "a usage error: {stderr}");
    assert!(
        stderr.contains(&a.root.display().to_string())
            && stderr.contains(&format!("pid {}", agent_pid(&a))),
        "names the root dir and the holder: {stderr}"
    );
    // The first agent's pod was never touched.
    assert_eq!(main_container(&a, "web"), (id.clone(), pid));
    // Monitors and containers outlive the agent on purpose: none may hold the lock, so once
    // the agent is gone (even by SIGKILL) the next one starts and adopts the pod.
    let lock = a.root.join("lock");
    assert_eq!(holders_of(&lock, agent_pid(&a)), Vec::<i32>::new());
    a.kill9();
    assert!(alive(pid), "the container outlives the agent");
    a.start();
    wait_until("the pod adopted", Duration::from_secs(30), || {
        a.agent_log().contains("main: adopted").then_some(())
    });
    assert_eq!(main_container(&a, "web"), (id, pid));
}

#[test]
fn drain_is_refused_while_an_agent_holds_the_root_dir_whatever_its_status_address() {
    let mut a = Agent::new("lock-drain");
    // The agent answers on a port of its own, not the default address drain used to probe.
    a.start();
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '1000']"));
    let (id, pid) = main_container(&a, "web");
    let uid = uid_of(&a, "web");
    let out = drain(&a.root);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "refused: {stderr}");
    assert!(
        stderr.contains("stop it first")
            && stderr.contains(&a.root.display().to_string())
            && stderr.contains(&format!("pid {}", agent_pid(&a))),
        "{stderr}"
    );
    assert!(alive(pid), "the pod's container was not stopped");
    assert_eq!(main_container(&a, "web"), (id, pid));
    let net = a.root.join("pods").join(&uid).join("ns/net");
    assert!(
        a.mounts_below_base().contains(&net.display().to_string()),
        "the sandbox is still there"
    );
}

#[test]
fn drain_stops_containers_that_crun_lists_without_a_pod_record() {
    let mut a = Agent::new("lock-stray");
    a.start();
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '1000']"));
    let (_, web) = main_container(&a, "web");
    a.kill9();
    let stray = stray_container(&a, "stray-1");
    let out = drain(&a.root);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stopped default/web-node1")
            && stdout.contains("stopped container stray-1 (no pod record)"),
        "{stdout}"
    );
    assert!(!alive(stray) && !alive(web));
    assert_eq!(a.crun_list(), Vec::new());
    assert!(a.monitors().is_empty());
    // Nothing is left for a later drain.
    let again = drain(&a.root);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(a.crun_list(), Vec::new());
    assert!(
        a.mounts_below_base().is_empty(),
        "{:?}",
        a.mounts_below_base()
    );
}

#[test]
fn the_startup_sweep_removes_containers_that_crun_lists_without_a_pod_record() {
    let mut a = Agent::new("lock-sweep");
    fs::create_dir_all(&a.root).unwrap();
    let stray = stray_container(&a, "stray-2");
    a.start();
    wait_sweep(&a, 1);
    assert!(!alive(stray), "{}", a.agent_log());
    assert_eq!(a.crun_list(), Vec::new());
    assert!(a
        .agent_log()
        .contains("removing orphaned container stray-2"));
}

/// Unmounts (lazily, deepest first) everything below `dir`, then removes it: what the old
/// drain did to a live agent's pods.
fn remove_sandbox(a: &Agent, dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = a
        .mounts_below_base()
        .into_iter()
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    assert!(!mounts.is_empty(), "the pod has mounts to lose");
    for m in mounts {
        let out = Command::new("umount").args(["-l", &m]).output().unwrap();
        assert!(out.status.success(), "umount {m}: {out:?}");
    }
    fs::remove_dir_all(dir).unwrap();
}

/// The crun id and host pid of a pod's running container once it has restarted.
fn restarted(a: &Agent, pod: &str, container: &str) -> (String, i32) {
    let status = a.wait_container(pod, container, "running again", |c| {
        c["state"].get("running").is_some() && c["restartCount"].as_u64() >= Some(1)
    });
    let id = status["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("crun://")
        .to_string();
    let pid = a
        .crun_list()
        .into_iter()
        .find(|(i, _, _)| *i == id)
        .unwrap_or_else(|| panic!("{id} is not in crun list"))
        .1 as i32;
    (id, pid)
}

#[test]
fn a_pod_whose_sandbox_vanished_is_set_up_again() {
    let mut a = Agent::new("lock-sandbox");
    a.start();
    a.write_manifest(
        "web.yaml",
        &pod_yaml("web", "", "", "[sleep, '1000']").replace(
            "  containers:\n",
            &format!(
                "  containers:\n  - {{name: side, image: {IMAGE}, command: [sleep, '1001']}}\n"
            ),
        ),
    );
    let (id, pid) = main_container(&a, "web");
    a.wait_running("web", "side");
    let uid = uid_of(&a, "web");
    let pod_dir = a.root.join("pods").join(&uid);
    remove_sandbox(&a, &pod_dir);
    // main dies (as the old drain killed it); side still runs in the lost sandbox.
    let out = Command::new("crun")
        .arg("--root")
        .arg(a.root.join("crun"))
        .args(["kill", &id, "KILL"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_, main_pid) = restarted(&a, "web", "main");
    let (_, side_pid) = restarted(&a, "web", "side");
    assert_ne!(main_pid, pid);
    // Both run in the pod's new network namespace, pinned in the pod dir again: the pod's
    // containers are never split over two sandboxes.
    let pinned = fs::metadata(pod_dir.join("ns/net")).unwrap();
    for p in [main_pid, side_pid] {
        let joined = fs::metadata(format!("/proc/{p}/ns/net")).unwrap();
        assert_eq!(
            (pinned.dev(), pinned.ino()),
            (joined.dev(), joined.ino()),
            "pid {p} is in the pod's network namespace"
        );
    }
    assert!(pod_dir.join("pod.json").is_file(), "the pod record is back");
    let log = a.agent_log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pod sandbox is gone") && !l.contains(" DEBUG "))
        .collect();
    assert_eq!(lines.len(), 1, "one log line: {log}");
    assert!(lines[0].contains("ns/net"), "{}", lines[0]);
    assert!(!log.contains("RunContainerError"), "{log}");
}

/// Both pod cgroups of an agent's pods: `<cgroupRoot>/pod<uid>` in any hierarchy.
fn cgroup_exists(parent: &str, uid: &str) -> bool {
    staticlet::sys::host::cgroup_dirs(&format!("{parent}/pod{uid}"))
        .iter()
        .any(|d| d.is_dir())
}

#[test]
fn agents_with_different_root_dirs_keep_their_own_cgroups() {
    let mut a = Agent::new("lock-cg-a");
    a.start();
    // A finished pod keeps its (empty) pod cgroup until it is removed: the kind another
    // agent's sweep used to take.
    a.write_manifest(
        "done.yaml",
        &pod_yaml("done", "  restartPolicy: Never\n", "", "[sh, -c, 'true']"),
    );
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '1000']"));
    a.wait_container("done", "main", "terminated", |c| {
        c["state"].get("terminated").is_some()
    });
    let (_, pid) = main_container(&a, "web");
    let (done, web) = (uid_of(&a, "done"), uid_of(&a, "web"));
    let root_a = a.cgroup_root();
    assert!(root_a.starts_with("/staticlet-"), "{root_a}");
    assert!(cgroup_exists(&root_a, &done) && cgroup_exists(&root_a, &web));
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.contains(&format!("{root_a}/pod{web}/main-0")),
        "the container's cgroup is under the agent's own parent: {own}"
    );
    let mut b = Agent::new("lock-cg-b");
    let root_b = b.cgroup_root();
    assert_ne!(root_a, root_b);
    // An orphan of b's own, which b's sweep must remove.
    let orphan = "0123456789abcdef0123456789abcdef";
    let orphan_dirs =
        staticlet::sys::host::controller_dirs(&format!("{root_b}/pod{orphan}"), "pids");
    for d in &orphan_dirs {
        fs::create_dir_all(d).unwrap();
    }
    assert!(!orphan_dirs.is_empty());
    b.start();
    wait_sweep(&b, 1);
    assert!(!cgroup_exists(&root_b, orphan), "{}", b.agent_log());
    assert!(
        cgroup_exists(&root_a, &done) && cgroup_exists(&root_a, &web),
        "b's sweep left a's cgroups alone\n{}",
        b.agent_log()
    );
    assert!(alive(pid));
}

#[test]
fn adopted_pods_are_published_before_a_long_sweep() {
    let mut a = Agent::new("lock-fast");
    a.start();
    a.write_manifest("web.yaml", &pod_yaml("web", "", "", "[sleep, '1000']"));
    let (_, pid) = main_container(&a, "web");
    a.kill9();
    // Many pod dirs without a record for the sweep to remove.
    let pods = a.root.join("pods");
    let orphans: Vec<PathBuf> = (0..4000)
        .map(|i| pods.join(format!("orphan-{i}")))
        .collect();
    for o in &orphans {
        fs::create_dir_all(o.join("containers/main/0")).unwrap();
        for f in ["pod.json", "etc-hosts", "status.json"] {
            fs::write(o.join(f), b"not a record").unwrap();
        }
    }
    let started = Instant::now();
    a.start();
    let left = wait_until(
        &format!("the adopted pod on /pods\n{}", a.agent_log()),
        Duration::from_secs(60),
        || {
            a.pod("web")?;
            Some(orphans.iter().filter(|o| o.exists()).count())
        },
    );
    let shown = started.elapsed();
    eprintln!(
        "shown after {shown:?} with {left} of {} orphans left",
        orphans.len()
    );
    assert!(
        left > 0,
        "the adopted pod was shown only after the sweep had removed every orphan ({shown:?})"
    );
    assert!(shown < Duration::from_secs(30), "{shown:?}");
    wait_sweep(&a, 2);
    assert!(orphans.iter().all(|o| !o.exists()));
    assert!(alive(pid));
    assert_eq!(main_container(&a, "web").1, pid);
}
