//! The networked start: a pod that is not hostNetwork, manifest → running, against its
//! physical limit measured in the same run: what `cnitool add` does with the same conflist
//! (the same plugins called in order, each given the previous result) into a fresh network
//! namespace, then `crun run -d` of the equivalent bundle joined to that namespace.
//!
//! The run has a network of its own, named after its directory (so `--cleanup DIR` finds
//! it): bridge `stlb<suffix>` (at most 15 characters), a /24 of 10.214.0.0/16, host-local's
//! store below the run's directory. Every agent of the run uses it (`--cni-conf-dir`).

use super::sides::{self, Agent, Bare, Bench};
use super::sys::{self, Markers, R};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CNI_BIN: &str = "/opt/cni/bin:/usr/lib/cni";

/// The run's bridge: `stlb` and the last characters of the run's directory name.
pub fn bridge(base: &Path) -> String {
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tail: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .rev()
        .take(11)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("stlb{tail}")
}

pub fn conf_dir(base: &Path) -> PathBuf {
    base.join("net.d")
}

/// Writes the run's conflist (the default network's plugins, on the run's own bridge and
/// subnet); returns the list.
pub fn setup(base: &Path) -> R<Value> {
    let sum: u32 = bridge(base).bytes().map(u32::from).sum();
    let subnet = format!("10.214.{}.0/24", sum % 250 + 1);
    let list = json!({
        "cniVersion": "1.0.0",
        "name": bridge(base),
        "plugins": [
            {"type": "bridge", "bridge": bridge(base), "isGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": base.join("cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "loopback"}
        ]
    });
    let dir = conf_dir(base);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::write(dir.join("10-bench.conflist"), list.to_string()).map_err(|e| e.to_string())?;
    Ok(list)
}

/// A new network namespace pinned at `path` (what `ip netns add` does).
fn netns_create(path: &Path) -> R<()> {
    fs::write(path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
    let target = path.to_path_buf();
    std::thread::spawn(move || -> R<()> {
        // SAFETY: unshare affects this short-lived thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) };
        let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
        let (src, tgt) = (
            c(&format!("/proc/self/task/{tid}/ns/net"))?,
            c(&target.to_string_lossy())?,
        );
        // SAFETY: valid NUL-terminated strings; a plain bind mount.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(format!("bind mount: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    })
    .join()
    .map_err(|_| "netns thread panicked".to_string())?
}

fn netns_remove(path: &Path) {
    sys::umount(path);
    let _ = fs::remove_file(path);
}

/// `cnitool add|del`: every plugin of `list` (in order for ADD, reversed for DEL) with the
/// CNI environment and its configuration (name, version, prevResult) on stdin.
fn cni(command: &str, list: &Value, netns: &Path, id: &str) -> R<Value> {
    let plugins: Vec<Value> = list["plugins"].as_array().cloned().unwrap_or_default();
    let order: Vec<Value> = if command == "ADD" {
        plugins
    } else {
        plugins.into_iter().rev().collect()
    };
    let mut prev: Option<Value> = None;
    for p in order {
        let kind = p["type"].as_str().unwrap_or("").to_string();
        let binary = CNI_BIN
            .split(':')
            .map(|d| Path::new(d).join(&kind))
            .find(|p| p.is_file())
            .ok_or(format!("CNI plugin {kind} not found in {CNI_BIN}"))?;
        let mut conf = p.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if let Some(r) = &prev {
            conf["prevResult"] = r.clone();
        }
        let mut child = Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_BIN)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        if let Some(mut w) = child.stdin.take() {
            use std::io::Write;
            let _ = w.write_all(conf.to_string().as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{kind} {command}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if command == "ADD" {
            prev = Some(serde_json::from_slice(&out.stdout).map_err(|e| format!("{kind}: {e}"))?);
        }
    }
    Ok(prev.unwrap_or_default())
}

/// The networked start, interleaved as the other figures: staticlet's pod (manifest renamed
/// into the directory → marker) against netns + CNI ADD + `crun run -d` → marker.
/// Repetition 0 is a warm-up. Returns (staticlet, limit) in ms.
pub fn start_test(
    reps: usize,
    b: &Bench,
    m: &mut Markers,
    lower: &Path,
    list: &Value,
) -> R<(Vec<f64>, Vec<f64>)> {
    let manifests = b.dir("manifests-net")?;
    let mut agent = Agent::spawn(b, &manifests, "net")?;
    agent.wait_healthy()?;
    let one = |p: &[Value]| p.len() == 1 && sides::running(&p[0]);
    let markers = m.dir.clone();
    let pod = |token: &str| sides::pod_yaml("net", token, &markers, false, false);
    b.write_manifest(&manifests, "net.yaml", &pod("s-net-warmup"))?;
    m.wait("s-net-warmup", Duration::from_secs(60))?;
    agent.wait_pods(
        "the networked warm-up pod running",
        Duration::from_secs(30),
        one,
    )?;
    let bare = Bare::new_in(b, &sides::staticlet_config(&b.root)?, lower, "bare-net")?;
    let remove = |p: PathBuf| fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()));
    remove(manifests.join("net.yaml"))?;
    agent.wait_empty(Duration::from_secs(30))?;
    let netns_dir = b.base.join("bare-netns");
    fs::create_dir_all(&netns_dir).map_err(|e| e.to_string())?;
    let (mut s, mut c) = (Vec::new(), Vec::new());
    for i in 0..=reps {
        for side in 0..2 {
            sys::sleep(Duration::from_millis(150))?;
            if (side + i) % 2 == 0 {
                let token = format!("s-net-{i}");
                let t0 = b.write_manifest(&manifests, "net.yaml", &pod(&token))?;
                let t1 = m.wait(&token, Duration::from_secs(60))?;
                agent.wait_pods("the networked pod running", Duration::from_secs(30), one)?;
                remove(manifests.join("net.yaml"))?;
                agent.wait_empty(Duration::from_secs(30))?;
                if i > 0 {
                    s.push(ms(t1 - t0));
                }
            } else {
                let (id, token) = (format!("net-{i}"), format!("c-net-{i}"));
                let netns = netns_dir.join(&id);
                bare.prepare_in_netns(&id, &sides::container_cmd(&token, "sleep 1000000"), &netns)?;
                let t0 = Instant::now();
                netns_create(&netns)?;
                cni("ADD", list, &netns, &id)?;
                bare.run(&id)?;
                let t1 = m.wait(&token, Duration::from_secs(60))?;
                bare.remove(&id);
                cni("DEL", list, &netns, &id)?;
                netns_remove(&netns);
                if i > 0 {
                    c.push(ms(t1 - t0));
                }
            }
        }
    }
    agent.stop();
    Ok((s, c))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Part of `--cleanup`: before the run's mounts go, releases what the run's pods and bare
/// containers took (DEL while their namespaces still exist), then removes the bridge.
pub fn cleanup(base: &Path) {
    let roots = fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    for root in roots.filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("root"))
    }) {
        staticlet::network::release_orphans(&root, &Default::default());
    }
    let list: Option<Value> = fs::read(conf_dir(base).join("10-bench.conflist"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    for ns in fs::read_dir(base.join("bare-netns"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = ns.file_name().to_string_lossy().to_string();
        if let Some(list) = &list {
            let _ = cni("DEL", list, &ns.path(), &id);
        }
        netns_remove(&ns.path());
    }
    let _ = Command::new("ip")
        .args(["link", "del", &bridge(base)])
        .stderr(Stdio::null())
        .status();
}
