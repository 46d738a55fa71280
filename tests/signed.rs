//! Signed manifests on real crun: keys and signatures made with the real `minisign` tool, the
//! manifest URL served over HTTPS on loopback with a test CA.

use crate::common;

use common::tls::TestCa;
use common::*;
use sha2::Digest;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minisign key pair made by the real tool.
struct Keys {
    public: PathBuf,
    secret: PathBuf,
}

impl Keys {
    fn new(dir: &Path, name: &str) -> Keys {
        let (public, secret) = (
            dir.join(format!("{name}.pub")),
            dir.join(format!("{name}.key")),
        );
        let out = Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret)
            .output()
            .expect("minisign is missing: apt-get install minisign (tests/setup-host does)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { public, secret }
    }

    /// Signs `body` (written to `file`): returns the `.minisig` text the tool made.
    fn sign(&self, file: &Path, body: &str) -> String {
        fs::write(file, body).unwrap();
        run_ok(
            Command::new("minisign")
                .arg("-S")
                .arg("-s")
                .arg(&self.secret)
                .arg("-m")
                .arg(file),
        );
        fs::read_to_string(format!("{}.minisig", file.display())).unwrap()
    }
}

fn command_of(a: &Agent, pod: &str) -> Option<String> {
    a.pod(pod).and_then(|p| {
        p["spec"]["containers"][0]["command"][1]
            .as_str()
            .map(String::from)
    })
}

fn problems(a: &Agent) -> String {
    a.http("/manifests").expect("the agent answers /manifests")
}

/// Puts a manifest and its signature in place the way an operator should: the signature
/// first, then the manifest renamed in.
fn place(a: &Agent, name: &str, body: &str, sig: Option<&str>) {
    let sig_path = a.manifests.join(format!("{name}.minisig"));
    match sig {
        Some(s) => {
            let tmp = a.base.join(format!(".{name}.minisig.tmp"));
            fs::write(&tmp, s).unwrap();
            fs::rename(&tmp, &sig_path).unwrap();
        }
        None => {
            let _ = fs::remove_file(&sig_path);
        }
    }
    a.write_manifest(name, body);
}

#[test]
fn signed_directory_manifests_run_and_others_are_refused() {
    let mut a = Agent::new("signed-dir");
    let work = a.base.join("keys");
    fs::create_dir_all(&work).unwrap();
    let (pinned, stranger) = (Keys::new(&work, "pinned"), Keys::new(&work, "stranger"));
    a.extra_args = vec![
        "--manifest-public-key".into(),
        pinned.public.display().to_string(),
    ];
    a.start();
    let v1 = pod_yaml("web", "", "", "[sleep, '1000']");
    let v2 = pod_yaml("web", "", "", "[sleep, '1001']");
    let signed = work.join("web.yaml");
    place(&a, "web.yaml", &v1, Some(&pinned.sign(&signed, &v1)));
    a.wait_running("web", "main");
    assert_eq!(command_of(&a, "web").as_deref(), Some("1000"));

    // An edit without a new signature: the old one no longer matches.
    a.write_manifest("web.yaml", &v2);
    wait_until("the tampered edit refused", Duration::from_secs(20), || {
        problems(&a)
            .contains("does not match the manifest")
            .then_some(())
    });
    // Signed, but by a key that is not pinned.
    place(&a, "web.yaml", &v2, Some(&stranger.sign(&signed, &v2)));
    wait_until(
        "the stranger's signature refused",
        Duration::from_secs(20),
        || problems(&a).contains("not pinned").then_some(()),
    );
    assert_eq!(
        command_of(&a, "web").as_deref(),
        Some("1000"),
        "the last good version keeps running"
    );
    a.wait_running("web", "main");
    // A manifest with no signature at all never starts.
    place(
        &a,
        "other.yaml",
        &pod_yaml("other", "", "", "[sleep, '7']"),
        None,
    );
    wait_until(
        "the unsigned manifest refused",
        Duration::from_secs(20),
        || {
            problems(&a)
                .contains("not signed: other.yaml.minisig is missing")
                .then_some(())
        },
    );
    // Signed by the pinned key: applied.
    place(&a, "web.yaml", &v2, Some(&pinned.sign(&signed, &v2)));
    wait_until("the signed edit applied", Duration::from_secs(30), || {
        (command_of(&a, "web").as_deref() == Some("1001")).then_some(())
    });
    a.wait_running("web", "main");
    assert!(a.pod("other").is_none());
    let metrics = a.http("/metrics").unwrap();
    let refusals: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("staticlet_manifest_signature_refusals_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(refusals >= 3, "{metrics}");
}

/// Status and body by request path.
type Answers = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// An HTTPS server on loopback answering each path with what the test sets.
struct Server {
    port: u16,
    paths: Answers,
    server: Arc<tiny_http::Server>,
}

impl Server {
    fn start(ca: &TestCa) -> Server {
        let (server, port) = ca.https_server();
        let paths: Answers = Default::default();
        let (s, p) = (server.clone(), paths.clone());
        std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let (status, body) = p
                    .lock()
                    .unwrap()
                    .get(req.url())
                    .cloned()
                    .unwrap_or((404, Vec::new()));
                let _ = req.respond(tiny_http::Response::from_data(body).with_status_code(status));
            }
        });
        Server {
            port,
            paths,
            server,
        }
    }

    fn serve(&self, path: &str, status: u16, body: &str) {
        self.paths
            .lock()
            .unwrap()
            .insert(path.into(), (status, body.as_bytes().to_vec()));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn pod_list(name: &str, sleep: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"PodList","items":[{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"terminationGracePeriodSeconds":1,"containers":[{{"name":"main","image":"{IMAGE}","command":["sleep","{sleep}"]}}]}}}}]}}"#
    )
}

#[test]
fn signed_url_bodies_and_a_tampered_cache() {
    let ca = TestCa::new("signed-url-ca");
    let server = Server::start(&ca);
    let mut a = Agent::new("signed-url");
    let work = a.base.join("keys");
    fs::create_dir_all(&work).unwrap();
    let (pinned, stranger) = (Keys::new(&work, "pinned"), Keys::new(&work, "stranger"));
    let ca_file = ca.write(&a.base, "ca.pem");
    let config = a.base.join("config.yaml");
    fs::write(
        &config,
        format!(
            "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nhttpCheckFrequency: 1s\nmanifestPublicKeys: [{}]\n",
            pinned.public.display()
        ),
    )
    .unwrap();
    a.extra_args = vec![
        "--config".into(),
        config.display().to_string(),
        "--manifest-url".into(),
        format!("https://127.0.0.1:{}/pods", server.port),
        "--manifest-url-ca-file".into(),
        ca_file.display().to_string(),
    ];
    let body_file = work.join("pods");
    let (v1, v2) = (pod_list("fromurl", "1000"), pod_list("fromurl", "1002"));
    server.serve("/pods", 200, &v1);
    server.serve("/pods.minisig", 200, &pinned.sign(&body_file, &v1));
    a.start();
    a.wait_running("fromurl", "main");

    // A body that does not match its signature, then one signed by an unknown key.
    server.serve("/pods", 200, &v2);
    wait_until("the tampered body refused", Duration::from_secs(20), || {
        problems(&a)
            .contains("does not match the manifest")
            .then_some(())
    });
    server.serve("/pods.minisig", 200, &stranger.sign(&body_file, &v2));
    wait_until(
        "the stranger's body refused",
        Duration::from_secs(20),
        || problems(&a).contains("not pinned").then_some(()),
    );
    assert_eq!(command_of(&a, "fromurl").as_deref(), Some("1000"));
    // Signed by the pinned key: applied and cached with its signature.
    server.serve("/pods.minisig", 200, &pinned.sign(&body_file, &v2));
    wait_until("the signed body applied", Duration::from_secs(30), || {
        (command_of(&a, "fromurl").as_deref() == Some("1002")).then_some(())
    });
    a.kill9();

    // Someone rewrites the newest cached version consistently (body and its hash in
    // meta.json): its signature no longer verifies, so the boot falls back to the version
    // before it, whose signature does.
    let cache = a.root.join("url-cache");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.join("meta.json")).unwrap()).unwrap();
    let old_sha = meta["sha256"].as_str().unwrap().to_string();
    assert!(
        cache.join(format!("sig.{old_sha}")).exists(),
        "the signature is cached"
    );
    let evil = pod_list("fromurl", "6666");
    let evil_sha = staticlet::image::extract::hex(&sha2::Sha256::digest(evil.as_bytes()));
    fs::write(cache.join(format!("body.{evil_sha}")), &evil).unwrap();
    fs::copy(
        cache.join(format!("sig.{old_sha}")),
        cache.join(format!("sig.{evil_sha}")),
    )
    .unwrap();
    meta["sha256"] = evil_sha.clone().into();
    fs::write(cache.join("meta.json"), meta.to_string()).unwrap();
    server.serve("/pods", 503, "down");
    a.start();
    wait_until(
        "a boot from the previous cached version",
        Duration::from_secs(30),
        || (command_of(&a, "fromurl").as_deref() == Some("1000")).then_some(()),
    );
    let log = a.agent_log();
    assert!(log.contains("using the previous cached version"), "{log}");
    assert!(
        !log.contains("6666") || log.contains("cannot be used"),
        "{log}"
    );
}

#[test]
fn a_key_file_that_is_not_a_key_is_a_usage_error() {
    let dir = unique_dir("badkey");
    let key = dir.join("k.pub");
    fs::write(&key, "not a key\n").unwrap();
    let out = Command::new(bin())
        .args(["run", "--status-address", "none", "--root-dir"])
        .arg(dir.join("root"))
        .arg("--pod-manifest-path")
        .arg(&dir)
        .arg("--manifest-public-key")
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("k.pub") && err.contains("not a minisign public key"),
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}
