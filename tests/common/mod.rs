//! Shared test support: an OCI image built from Debian's busybox-static, and a real agent
//! (the staticlet binary) running with its own root dir, log dir and status port, cleaned up
//! completely when the test ends.

pub mod host;
pub mod net;
pub mod status;
pub mod tls;

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "localhost/staticlet-test:latest";

/// The environment variable that names another staticlet binary to test (cross/ci sets it to
/// the ARM builds, which run under qemu-user through binfmt_misc).
pub const BIN_VAR: &str = "STATICLET_TEST_BIN";

/// The staticlet binary under test: `$STATICLET_TEST_BIN` when set, else the one cargo built.
/// A named binary that cannot be run fails the test (never a silent fallback to the host's).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var(BIN_VAR) {
        Ok(path) if !path.is_empty() => {
            // Absolute, as the agent re-executes itself from its own path.
            let path = fs::canonicalize(&path)
                .unwrap_or_else(|e| panic!("{BIN_VAR}={path}: {e}"))
                .to_string_lossy()
                .into_owned();
            let ran = Command::new(&path).arg("version").output();
            match ran {
                Ok(out) if out.status.success() => path,
                Ok(out) => panic!(
                    "{BIN_VAR}={path}: `version` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => panic!(
                    "{BIN_VAR}={path} cannot run: {e} (a foreign binary needs binfmt_misc and \
                     qemu-user; cross/ci registers them)"
                ),
            }
        }
        _ => env!("CARGO_BIN_EXE_staticlet").to_string(),
    })
}

/// Fails loudly (never skips) when the machine lacks what these tests exercise.
pub fn require_root_and_crun() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "these tests run real containers and must run as root (see .ci/run)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    assert!(
        Command::new("crun")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false),
        "crun is missing: apt-get install crun"
    );
}

pub fn unique_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "stl-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let hex = sha256_hex(data);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(&hex), data).unwrap();
    (format!("sha256:{hex}"), data.len() as u64)
}

/// An OCI image layout holding busybox and its applets, made here with tar, gzip and sha256.
pub fn busybox_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let mut tar = tar::Builder::new(Vec::new());
    let add_dir = |tar: &mut tar::Builder<Vec<u8>>, name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        tar.append_data(&mut h, name, &[][..]).unwrap();
    };
    for d in ["bin", "etc", "tmp", "www", "root"] {
        add_dir(&mut tar, d);
    }
    let busybox = fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(busybox.len() as u64);
    tar.append_data(&mut h, "bin/busybox", &busybox[..])
        .unwrap();
    let applets = String::from_utf8(
        Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for a in applets.lines().filter(|a| *a != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        tar.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    for (name, body) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("www/index.html", "hello from a static pod\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(body.len() as u64);
        tar.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let layer = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&layer).unwrap();
    let (layer_digest, layer_size) = write_blob(&layout, &gz.finish().unwrap());
    let config = json!({
        "architecture": staticlet::image::host_platform().1, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = write_blob(&layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = write_blob(&layout, manifest.to_string().as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

/// Runs a command that must succeed (its stderr in the failure), and returns its output.
pub fn run_ok(mut cmd: impl std::borrow::BorrowMut<Command>) -> std::process::Output {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub use host::free_port;

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_until`], but gives `None` at the deadline, for a caller that reports what
/// it saw last.
pub fn wait_until_or_none<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A real agent with everything of its own under one temporary directory.
pub struct Agent {
    pub base: PathBuf,
    pub root: PathBuf,
    pub logs: PathBuf,
    pub manifests: PathBuf,
    pub port: u16,
    pub node: String,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
}

impl Agent {
    /// Prepares directories and imports the busybox image; does not start the agent.
    pub fn new(tag: &str) -> Agent {
        require_root_and_crun();
        let base = unique_dir(tag);
        let a = Agent {
            root: base.join("root"),
            logs: base.join("logs"),
            manifests: base.join("manifests"),
            port: free_port(),
            node: "node1".into(),
            base,
            child: None,
            extra_args: Vec::new(),
        };
        fs::create_dir_all(&a.manifests).unwrap();
        let layout = busybox_layout(&a.base);
        run_ok(
            Command::new(bin())
                .args(["images", "--root-dir"])
                .arg(&a.root)
                .args(["import"])
                .arg(&layout)
                .args(["--name", IMAGE]),
        );
        a
    }

    pub fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join("agent.log"))
            .unwrap();
        let child = Command::new(bin())
            .arg("run")
            .arg("--pod-manifest-path")
            .arg(&self.manifests)
            .arg("--root-dir")
            .arg(&self.root)
            .arg("--pod-logs-dir")
            .arg(&self.logs)
            .args([
                "--status-address",
                &format!("127.0.0.1:{}", self.port),
                "--node-name",
                &self.node,
            ])
            .args(&self.extra_args)
            .env("STATICLET_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_until("the status endpoint", Duration::from_secs(20), || {
            self.http("/healthz").filter(|b| b == "ok")
        });
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.base.join("agent.log")).unwrap_or_default()
    }

    /// The body of a 2xx answer; `None` when the endpoint does not answer (for polling).
    pub fn http(&self, path: &str) -> Option<String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        agent
            .get(&format!("http://127.0.0.1:{}{path}", self.port))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()
    }

    /// The agent's `/pods`. An endpoint that does not answer fails the test: it must never
    /// read as "no pods" (an absent pod would then pass).
    pub fn pods(&self) -> Value {
        self.try_pods()
            .unwrap_or_else(|| panic!("/pods does not answer\n{}", self.agent_log()))
    }

    /// The agent's `/pods`, or `None` while it does not answer (an agent still starting).
    pub fn try_pods(&self) -> Option<Value> {
        let body = self.http("/pods")?;
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/pods is not JSON ({e}): {body}"));
        assert!(v["items"].is_array(), "/pods is not a PodList: {body}");
        Some(v)
    }

    /// Pod `name` (without the node suffix); `None` only when `/pods` answers without it.
    pub fn pod(&self, name: &str) -> Option<Value> {
        Self::find_pod(&self.pods(), &format!("{name}-{}", self.node))
    }

    fn find_pod(pods: &Value, full: &str) -> Option<Value> {
        pods["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == full)
            .cloned()
    }

    /// The pod's container status once `f` accepts it.
    pub fn wait_container(
        &self,
        pod: &str,
        container: &str,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(
            &format!("{pod}/{container}: {what}\n{}", self.agent_log()),
            Duration::from_secs(60),
            || {
                // Waiting for something to appear: an agent still starting is waited for.
                let p = Self::find_pod(&self.try_pods()?, &format!("{pod}-{}", self.node))?;
                let all: Vec<Value> = ["initContainerStatuses", "containerStatuses"]
                    .iter()
                    .flat_map(|k| p["status"][*k].as_array().cloned().unwrap_or_default())
                    .collect();
                all.into_iter().find(|c| c["name"] == container && f(c))
            },
        )
    }

    pub fn wait_running(&self, pod: &str, container: &str) -> Value {
        self.wait_container(pod, container, "running", |c| {
            c["state"].get("running").is_some()
        })
    }

    /// Writes a manifest atomically (temp file + rename), as deployment tools do.
    pub fn write_manifest(&self, file: &str, body: &str) {
        let tmp = self.base.join(format!(".{file}.tmp"));
        fs::write(&tmp, body).unwrap();
        fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    pub fn remove_manifest(&self, file: &str) {
        fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// What crun runs for this agent: id, pid, status. A `crun list` that keeps failing
    /// fails the test (it must never read as "nothing runs"); one that fails once is asked
    /// again (crun can trip over a container being created or deleted beside it).
    pub fn crun_list(&self) -> Vec<(String, i64, String)> {
        let mut last = String::new();
        for _ in 0..5 {
            match self.try_crun_list() {
                Ok(list) => return list,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{last}")
    }

    fn try_crun_list(&self) -> Result<Vec<(String, i64, String)>, String> {
        let out = Command::new("crun")
            .arg("--root")
            .arg(self.root.join("crun"))
            .args(["list", "--format", "json"])
            .output()
            .map_err(|e| format!("crun list: {e}"))?;
        if !out.status.success() {
            return Err(format!("crun list: {out:?}"));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("crun list: not JSON ({e}): {out:?}"))?;
        let list = v
            .as_array()
            .ok_or_else(|| format!("crun list: not a list: {v}"))?;
        Ok(list
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_string(),
                    c["pid"].as_i64().unwrap_or(0),
                    c["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect())
    }

    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let port = format!("127.0.0.1:{}", self.port);
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--status-address", &port]);
        let out = Command::new(bin()).args(&full).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Mount points at or below the test's directory, deepest first.
    pub fn mounts_below_base(&self) -> Vec<String> {
        host::mounts_below(&self.base)
            .iter()
            .map(|m| m.display().to_string())
            .collect()
    }

    /// This agent's monitors (see `host::monitors`).
    pub fn monitors(&self) -> Vec<i32> {
        host::monitors(&self.root)
    }

    /// The agent's cgroup parent: the default for its root dir (tests don't set cgroupRoot).
    pub fn cgroup_root(&self) -> String {
        staticlet::config::default_cgroup_root(&self.root)
    }

    pub fn pod_cgroups(&self, uid: &str) -> Vec<PathBuf> {
        staticlet::sys::host::cgroup_dirs(&format!("{}/pod{uid}", self.cgroup_root()))
            .into_iter()
            .filter(|d| d.exists())
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        let crun_root = self.root.join("crun");
        for (id, _, _) in self.try_crun_list().unwrap_or_default() {
            let _ = Command::new("crun")
                .arg("--root")
                .arg(&crun_root)
                .args(["kill", &id, "KILL"])
                .output();
            let _ = Command::new("crun")
                .arg("--root")
                .arg(&crun_root)
                .args(["delete", "--force", &id])
                .output();
        }
        for pid in self.monitors() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let uids: Vec<String> = fs::read_dir(self.root.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| format!("id: \\\"{}-", e.file_name().to_string_lossy()))
            .collect();
        // While the pods' namespaces are still mounted: releases their network attachments
        // (CNI DEL: addresses, veths, NAT rules), which nothing below would.
        let _ = Command::new(bin())
            .args(["drain", "--root-dir"])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // A pod whose namespace vanished (a test removing a sandbox) leaves its masquerade
        // rule behind (the bridge plugin's DEL cannot see its address): remove those too.
        if !uids.is_empty() {
            net::remove_nat_rules(|rule| uids.iter().any(|u| rule.contains(u.as_str())));
        }
        let mut mounts = self.mounts_below_base();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        if let Ok(pods) = fs::read_dir(self.root.join("pods")) {
            for p in pods.flatten() {
                for d in self.pod_cgroups(&p.file_name().to_string_lossy()) {
                    if let Ok(children) = fs::read_dir(&d) {
                        for c in children.flatten().filter(|c| c.path().is_dir()) {
                            let _ = fs::remove_dir(c.path());
                        }
                    }
                    let _ = fs::remove_dir(&d);
                }
            }
        }
        // The agent's own cgroup parent, with whatever pod cgroups are left in it.
        for parent in staticlet::sys::host::cgroup_dirs(&self.cgroup_root()) {
            for e in fs::read_dir(&parent).into_iter().flatten().flatten() {
                staticlet::sys::host::remove_cgroup_dir(&e.path());
            }
            let _ = fs::remove_dir(&parent);
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.base);
        } else {
            eprintln!(
                "agent log kept in {}",
                self.base.join("agent.log").display()
            );
        }
    }
}

/// A one-container pod manifest with the test image.
pub fn pod_yaml(name: &str, spec_extra: &str, container_extra: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 1\n{spec_extra}  containers:\n  - name: main\n    image: {IMAGE}\n    command: {command}\n{container_extra}"
    )
}
