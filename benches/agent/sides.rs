//! The two sides being compared: a real staticlet agent (the release binary, with its own
//! root dir, log dir, manifest dir and status port) and bare `crun run -d` of an equivalent
//! OCI bundle.

use super::sys::{self, Markers, R};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "localhost/staticlet-bench:latest";

/// Everything of one benchmark run lives below `base`; dropping it removes it all.
pub struct Bench {
    pub base: PathBuf,
    pub bin: PathBuf,
    pub root: PathBuf,
    pub pod_logs: PathBuf,
    pub agent_logs: PathBuf,
    pub tmp: PathBuf,
    pub log_level: Option<String>,
    pub keep_logs_in: PathBuf,
}

impl Bench {
    pub fn new(base: &Path, bin: &Path, log_level: Option<String>, logs_out: &Path) -> R<Bench> {
        let b = Bench {
            base: base.to_path_buf(),
            bin: bin.to_path_buf(),
            root: base.join("root"),
            pod_logs: base.join("pod-logs"),
            agent_logs: base.join("agent-logs"),
            tmp: base.join("tmp"),
            log_level,
            keep_logs_in: logs_out.to_path_buf(),
        };
        for d in [&b.base, &b.root, &b.pod_logs, &b.agent_logs, &b.tmp] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        Ok(b)
    }

    /// Imports the busybox test image into the agent's store; returns its unpacked rootfs
    /// (the same lower directory the agent's overlays use).
    pub fn import_image(&self, root: &Path, layout: &Path) -> R<PathBuf> {
        let out = Command::new(&self.bin)
            .args(["images", "--root-dir"])
            .arg(root)
            .arg("import")
            .arg(layout)
            .args(["--name", IMAGE])
            .output()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "image import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let store = staticlet::image::ImageStore::open(root).map_err(|e| e.to_string())?;
        let reference = staticlet::image::Reference::parse(IMAGE).map_err(|e| e.to_string())?;
        let image = store
            .resolve(&reference)
            .map_err(|e| e.to_string())?
            .ok_or("the imported image is not in the store")?;
        store.rootfs(&image).map_err(|e| e.to_string())
    }

    pub fn dir(&self, name: &str) -> R<PathBuf> {
        let d = self.base.join(name);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        Ok(d)
    }

    /// Writes `body` next to the target and renames it into place; returns the instant just
    /// before the rename, which is when the manifest "appears".
    pub fn write_manifest(&self, dir: &Path, file: &str, body: &str) -> R<Instant> {
        let tmp = self.tmp.join(format!(".{file}.tmp"));
        fs::write(&tmp, body).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let t0 = Instant::now();
        fs::rename(&tmp, dir.join(file))
            .map_err(|e| format!("rename into {}: {e}", dir.display()))?;
        Ok(t0)
    }

    /// Copies the agents' logs to `keep_logs_in` (for profiling and post-mortems).
    pub fn keep_logs(&self) {
        let _ = fs::create_dir_all(&self.keep_logs_in);
        if let Ok(rd) = fs::read_dir(&self.agent_logs) {
            for e in rd.flatten() {
                let _ = fs::copy(e.path(), self.keep_logs_in.join(e.file_name()));
            }
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.keep_logs();
        sys::cleanup_all(&self.base);
    }
}

/// A one-container pod whose process first writes its marker, then runs `then` (`sleep` or
/// busybox `httpd`); grace period 0; the marker directory is a hostPath volume at /m. The
/// start, edit and cold-start figures use hostNetwork pods (bare crun's containers have no
/// pod network either); the networked start and the idle/probe pods have their own network.
pub fn pod_yaml(
    name: &str,
    token: &str,
    markers: &Path,
    probe: bool,
    host_network: bool,
) -> String {
    let then = if probe {
        "httpd -f -p 8080 -h /www"
    } else {
        "sleep 1000000"
    };
    let probe = if probe {
        "    readinessProbe:\n      httpGet: {path: /, port: 8080}\n      periodSeconds: 10\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: default
spec:
  terminationGracePeriodSeconds: 0
  hostNetwork: {host_network}
  volumes:
  - name: m
    hostPath: {{path: {markers}, type: Directory}}
  containers:
  - name: main
    image: {IMAGE}
    command: [\"sh\", \"-c\", \"{cmd}\"]
    volumeMounts:
    - {{name: m, mountPath: /m}}
{probe}",
        markers = markers.display(),
        cmd = container_cmd(token, then),
    )
}

/// The container's shell command: the same on both sides.
pub fn container_cmd(token: &str, then: &str) -> String {
    format!(": > /m/{token}; exec {then}")
}

// ---- staticlet ----------------------------------------------------------------------------

pub struct Agent {
    child: Option<Child>,
    pub pid: i32,
    pub root: PathBuf,
    port: u16,
    http: ureq::Agent,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `staticlet run` (the release binary) on `manifests`; does not wait for it.
    pub fn spawn(b: &Bench, manifests: &Path, tag: &str) -> R<Agent> {
        Agent::spawn_with(b, &b.root, &b.bin, &[], manifests, tag)
    }

    /// The same with another root dir, binary and environment (`--compare-*`).
    pub fn spawn_with(
        b: &Bench,
        root: &Path,
        bin: &Path,
        env: &[(String, String)],
        manifests: &Path,
        tag: &str,
    ) -> R<Agent> {
        let port = crate::common::free_port();
        let log = b.agent_logs.join(format!("agent-{tag}.log"));
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.arg("run");
        // The run's own pod network; a binary to compare with may predate it (and the
        // figures it takes part in use hostNetwork pods).
        if bin == b.bin.as_path() {
            cmd.arg("--cni-conf-dir")
                .arg(super::network::conf_dir(&b.base));
        }
        cmd.arg("--pod-manifest-path")
            .arg(manifests)
            .arg("--root-dir")
            .arg(root)
            .arg("--pod-logs-dir")
            .arg(&b.pod_logs)
            .args(["--status-address", &format!("127.0.0.1:{port}")])
            .args(["--node-name", "bench"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("STATICLET_LOG");
        if let Some(level) = &b.log_level {
            cmd.env("STATICLET_LOG", level);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(Agent {
            pid: child.id() as i32,
            root: root.to_path_buf(),
            child: Some(child),
            port,
            http: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
            log,
        })
    }

    fn get(&self, path: &str) -> Option<String> {
        self.http
            .get(&format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()
    }

    pub fn wait_healthy(&mut self) -> R<()> {
        let child = self.child.as_mut().ok_or("the agent is gone")?;
        let log = self.log.clone();
        let port = self.port;
        let http = self.http.clone();
        sys::wait_until(
            "the agent's status endpoint",
            Duration::from_secs(20),
            Duration::from_millis(10),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    return Some(Err(format!(
                        "the agent exited ({st}); its log:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    )));
                }
                http.get(&format!("http://127.0.0.1:{port}/healthz"))
                    .call()
                    .ok()
                    .map(|_| Ok(()))
            },
        )?
    }

    pub fn pods(&self) -> Option<Vec<Value>> {
        let v: Value = serde_json::from_str(&self.get("/pods")?).ok()?;
        v["items"].as_array().cloned()
    }

    /// Polls `/pods` until `f` accepts the list. Never used inside a measured window.
    pub fn wait_pods(&self, what: &str, timeout: Duration, f: impl Fn(&[Value]) -> bool) -> R<()> {
        sys::wait_until(what, timeout, Duration::from_millis(20), || {
            self.pods().filter(|p| f(p)).map(|_| ())
        })
        .map_err(|e| format!("{e}\nagent log {}", self.log.display()))
    }

    pub fn wait_empty(&self, timeout: Duration) -> R<()> {
        self.wait_pods("the agent to remove every pod", timeout, |p| p.is_empty())?;
        let crun_root = self.root.join("crun");
        sys::wait_until(
            "crun list to be empty",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || sys::crun_ids(&crun_root).is_empty().then_some(()),
        )
    }

    /// SIGTERM, as an operator would stop it (containers keep running by design).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn running(p: &Value) -> bool {
    p["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|cs| cs.iter().all(|c| c["state"].get("running").is_some()))
}

pub fn ready(p: &Value) -> bool {
    p["status"]["containerStatuses"]
        .as_array()
        .is_some_and(|cs| cs.iter().all(|c| c["ready"] == true))
}

/// The OCI config staticlet generated for the running container of its only pod.
pub fn staticlet_config(root: &Path) -> R<Value> {
    let pods = fs::read_dir(root.join("pods")).map_err(|e| e.to_string())?;
    for p in pods.flatten() {
        let f = p.path().join("containers/main/0/config.json");
        if let Ok(bytes) = fs::read(&f) {
            return serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", f.display()));
        }
    }
    Err("no config.json under the agent's pods".into())
}

// ---- bare crun ----------------------------------------------------------------------------

/// Bare crun: `crun run -d` of a bundle prepared beforehand, made from the very config.json
/// staticlet generated (same process, mounts, capabilities, masked paths, device rules,
/// cgroup resources, hostname), with what the pod sandbox provides replaced by its crun
/// equivalent: fresh network/IPC/UTS namespaces made by crun instead of pinned ones, a
/// tmpfs /dev/shm, copies of the pod's /etc/hosts, resolv.conf and hostname. The rootfs is
/// an overlay over the same unpacked image, like staticlet's, mounted before the clock
/// starts (so bare crun's time is crun alone).
pub struct Bare {
    pub state: PathBuf,
    dir: PathBuf,
    template: Value,
    lower: PathBuf,
    cgroup_parent: String,
}

impl Bare {
    pub fn new(b: &Bench, staticlet_config: &Value, lower: &Path) -> R<Bare> {
        Bare::new_in(b, staticlet_config, lower, "bare")
    }

    /// The same in `<base>/<name>` (its own crun state), for another template.
    pub fn new_in(b: &Bench, staticlet_config: &Value, lower: &Path, name: &str) -> R<Bare> {
        let dir = b.base.join(name);
        let etc = dir.join("etc");
        fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        let mut t = staticlet_config.clone();
        let mut mounts = Vec::new();
        for m in t["mounts"].as_array().cloned().unwrap_or_default() {
            let dest = m["destination"].as_str().unwrap_or("").to_string();
            let mut m = m;
            match dest.as_str() {
                "/etc/hosts" | "/etc/resolv.conf" | "/etc/hostname" => {
                    let src = PathBuf::from(m["source"].as_str().unwrap_or(""));
                    let copy = etc.join(dest.trim_start_matches("/etc/"));
                    fs::copy(&src, &copy).map_err(|e| format!("{}: {e}", src.display()))?;
                    m["source"] = json!(copy);
                }
                "/dev/shm" => {
                    m = json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]});
                }
                _ => {}
            }
            mounts.push(m);
        }
        t["mounts"] = json!(mounts);
        if let Some(ns) = t["linux"]["namespaces"].as_array_mut() {
            for n in ns.iter_mut() {
                if let Some(o) = n.as_object_mut() {
                    o.remove("path");
                }
            }
        }
        Ok(Bare {
            state: dir.join("state"),
            dir,
            template: t,
            lower: lower.to_path_buf(),
            cgroup_parent: sys::cgroup_parent(&b.base),
        })
    }

    /// The bundle for container `id` running `sh -c cmd`, its overlay rootfs mounted.
    pub fn prepare(&self, id: &str, cmd: &str) -> R<()> {
        self.prepare_with(id, cmd, None)
    }

    /// The same, joining the network namespace pinned at `netns` (made after this, before
    /// `run`).
    pub fn prepare_in_netns(&self, id: &str, cmd: &str, netns: &Path) -> R<()> {
        self.prepare_with(id, cmd, Some(netns))
    }

    fn prepare_with(&self, id: &str, cmd: &str, netns: Option<&Path>) -> R<()> {
        let bundle = self.dir.join(id);
        let (rootfs, upper, work) = (
            bundle.join("rootfs"),
            bundle.join("upper"),
            bundle.join("work"),
        );
        for d in [&rootfs, &upper, &work] {
            fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        sys::mount_overlay(&self.lower, &upper, &work, &rootfs)?;
        let mut c = self.template.clone();
        c["process"]["args"] = json!(["sh", "-c", cmd]);
        c["root"]["path"] = json!(rootfs);
        c["linux"]["cgroupsPath"] = json!(format!("{}/{id}", self.cgroup_parent));
        if let (Some(path), Some(ns)) = (netns, c["linux"]["namespaces"].as_array_mut()) {
            for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                n["path"] = json!(path);
            }
        }
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap_or_default(),
        )
        .map_err(|e| e.to_string())
    }

    /// `crun run -d`: returns once crun has started the container and exited. Like
    /// staticlet's monitor, crun logs its errors to a file; the container's stdio is
    /// /dev/null (a pipe would be inherited by the container and never reach EOF).
    pub fn run(&self, id: &str) -> R<()> {
        let bundle = self.dir.join(id);
        let log = bundle.join("crun.log");
        let st = Command::new("crun")
            .arg("--root")
            .arg(&self.state)
            .arg(format!("--log=file:{}", log.display()))
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("crun: {e}"))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!(
                "crun run -d {id}: {st}: {}",
                fs::read_to_string(&log).unwrap_or_default().trim()
            ))
        }
    }

    /// `crun create` then `crun start`, as staticlet's monitor runs a container: for the
    /// table only, to show what the two-step start costs over `crun run -d`.
    pub fn create_start(&self, id: &str) -> R<()> {
        let bundle = self.dir.join(id);
        let log = bundle.join("crun.log");
        let b = bundle.to_string_lossy().to_string();
        for args in [vec!["create", "--bundle", &b, id], vec!["start", id]] {
            let st = Command::new("crun")
                .arg("--root")
                .arg(&self.state)
                .arg(format!("--log=file:{}", log.display()))
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("crun: {e}"))?;
            if !st.success() {
                return Err(format!(
                    "crun {} {id}: {st}: {}",
                    args[0],
                    fs::read_to_string(&log).unwrap_or_default().trim()
                ));
            }
        }
        Ok(())
    }

    pub fn delete(&self, id: &str) {
        sys::crun_delete(&self.state, id);
    }

    /// Deletes the container (SIGKILL) and its bundle.
    pub fn remove(&self, id: &str) {
        self.delete(id);
        let bundle = self.dir.join(id);
        sys::umount(&bundle.join("rootfs"));
        let _ = fs::remove_dir_all(&bundle);
    }
}

/// Times staticlet's start: the manifest renamed into `dir` until the container's marker.
pub fn staticlet_start(
    b: &Bench,
    m: &mut Markers,
    dir: &Path,
    file: &str,
    token: &str,
    probe: bool,
) -> R<Duration> {
    let body = pod_yaml(file.trim_end_matches(".yaml"), token, &m.dir, probe, true);
    let t0 = b.write_manifest(dir, file, &body)?;
    let t1 = m.wait(token, Duration::from_secs(60))?;
    Ok(t1 - t0)
}
