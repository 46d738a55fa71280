//! Image pulls from a real registry (Debian's docker-registry) on loopback, with TLS from a
//! test CA and htpasswd basic auth; images pushed with skopeo.

use crate::common;

use common::tls::TestCa;
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Registry {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            Command::new("htpasswd").arg("-h").output().is_ok(),
            "htpasswd is missing: apt-get install apache2-utils"
        );
        let dir = unique_dir("registry");
        let ca = TestCa::new("registry-ca");
        let (cert, key) = ca.server();
        fs::write(dir.join("cert.pem"), cert).unwrap();
        fs::write(dir.join("key.pem"), key).unwrap();
        let out = Command::new("htpasswd")
            .args(["-Bbn", "gateway", "s3cret"])
            .output()
            .unwrap();
        fs::write(dir.join("htpasswd"), out.stdout).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {d}/data}}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls: {{certificate: {d}/cert.pem, key: {d}/key.pem}}\nauth:\n  htpasswd: {{realm: staticlet-test, path: {d}/htpasswd}}\n",
            d = dir.display()
        );
        fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        wait_until("the registry to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        // Clients find the CA as containerd and docker do: certs.d/<host:port>/ca.crt.
        let certs = dir.join("etc/certs.d").join(format!("127.0.0.1:{port}"));
        fs::create_dir_all(&certs).unwrap();
        ca.write(&certs, "ca.crt");
        fs::write(
            dir.join("auth.json"),
            json!({"auths": {format!("127.0.0.1:{port}"): {"auth": "Z2F0ZXdheTpzM2NyZXQ="}}})
                .to_string(),
        )
        .unwrap();
        fs::write(
            dir.join("wrong.json"),
            json!({"auths": {format!("127.0.0.1:{port}"): {"auth": "Z2F0ZXdheTp3cm9uZw=="}}})
                .to_string(),
        )
        .unwrap();
        Registry { dir, port, child }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout (all its platforms) with skopeo.
    fn push(&self, layout: &Path, name: &str) {
        let certs = self.dir.join("etc/certs.d").join(self.host());
        run_ok(
            Command::new("skopeo")
                .args([
                    "copy",
                    "--all",
                    "--dest-creds",
                    "gateway:s3cret",
                    "--dest-cert-dir",
                ])
                .arg(&certs)
                .arg(format!("oci:{}:latest", layout.display()))
                .arg(format!("docker://{}/{name}", self.host())),
        );
    }

    /// `staticlet images pull` with this registry's CA and the given credentials file.
    fn pull(&self, root: &Path, reference: &str, creds: &str) -> (bool, String) {
        let config = self.dir.join("staticlet.yaml");
        fs::write(
            &config,
            format!(
                "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nconfigDir: {}\n",
                self.dir.join("etc").display()
            ),
        )
        .unwrap();
        let out = Command::new(bin())
            .args(["images", "--config"])
            .arg(&config)
            .arg("--root-dir")
            .arg(root)
            .args(["pull", reference, "--image-credentials"])
            .arg(self.dir.join(creds))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Adds a second platform (arm64, or another if the host is arm64) to a busybox layout, so
/// its index lists two images; returns (host manifest digest, other manifest digest).
fn make_multi_arch(layout: &Path) -> (String, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let host_desc = index["manifests"][0].clone();
    let host_digest = host_desc["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let mut manifest: serde_json::Value = serde_json::from_slice(&blob(&host_digest)).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let (host_arch, other_arch) = match staticlet::image::host_platform().1 {
        "arm64" => ("arm64", "amd64"),
        a => (a, "arm64"),
    };
    config["architecture"] = json!(other_arch);
    let config_bytes = config.to_string().into_bytes();
    fs::write(
        layout.join("blobs/sha256").join(sha(&config_bytes)),
        &config_bytes,
    )
    .unwrap();
    manifest["config"]["digest"] = json!(format!("sha256:{}", sha(&config_bytes)));
    manifest["config"]["size"] = json!(config_bytes.len());
    let other = manifest.to_string().into_bytes();
    fs::write(layout.join("blobs/sha256").join(sha(&other)), &other).unwrap();
    let other_digest = format!("sha256:{}", sha(&other));
    let entry = |d: &str, size: u64, arch: &str| json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": size, "platform": {"os": "linux", "architecture": arch}});
    let nested = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        entry(&other_digest, other.len() as u64, other_arch),
        entry(&host_digest, host_desc["size"].as_u64().unwrap(), host_arch),
    ]})
    .to_string()
    .into_bytes();
    fs::write(layout.join("blobs/sha256").join(sha(&nested)), &nested).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{}", sha(&nested)), "size": nested.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    fs::write(layout.join("index.json"), top.to_string()).unwrap();
    (host_digest, other_digest)
}

#[test]
fn pull_by_tag_and_digest_with_tls_and_basic_auth() {
    let reg = Registry::start();
    let base = unique_dir("pull");
    let layout = busybox_layout(&base);
    reg.push(&layout, "ops/app:1.4");
    let root = base.join("root");
    let (ok, out) = reg.pull(&root, &format!("{}/ops/app:1.4", reg.host()), "auth.json");
    assert!(ok, "{out}");
    let digest = out
        .split('(')
        .nth(1)
        .and_then(|s| s.strip_suffix(")\n"))
        .unwrap()
        .to_string();
    let listing = Command::new(bin())
        .args(["images", "--root-dir"])
        .arg(&root)
        .arg("list")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains(&format!("{}/ops/app:1.4", reg.host()))
    );
    let (ok, out) = reg.pull(
        &base.join("root2"),
        &format!("{}/ops/app@{digest}", reg.host()),
        "auth.json",
    );
    assert!(ok, "by digest: {out}");
    let (ok, out) = reg.pull(
        &base.join("root3"),
        &format!("{}/ops/app:1.4", reg.host()),
        "wrong.json",
    );
    assert!(!ok && out.contains("wrong credentials"), "{out}");
    let (ok, out) = reg.pull(
        &base.join("root4"),
        &format!("{}/ops/app:nope", reg.host()),
        "auth.json",
    );
    assert!(
        !ok && out.contains("MANIFEST_UNKNOWN"),
        "the registry's answer is shown: {out}"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn multi_arch_index_picks_this_platform() {
    let reg = Registry::start();
    let base = unique_dir("multiarch");
    let layout = busybox_layout(&base);
    let (host_digest, _other) = make_multi_arch(&layout);
    reg.push(&layout, "ops/multi:1");
    let (ok, out) = reg.pull(
        &base.join("root"),
        &format!("{}/ops/multi:1", reg.host()),
        "auth.json",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&host_digest),
        "the host platform's manifest was chosen: {out}"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_corrupted_blob_is_detected_and_nothing_is_tagged() {
    let reg = Registry::start();
    let base = unique_dir("corrupt-pull");
    let layout = busybox_layout(&base);
    reg.push(&layout, "ops/bad:1");
    // Damage the biggest blob (the layer) in the registry's storage.
    let mut biggest: Option<(u64, PathBuf)> = None;
    let mut stack = vec![reg.dir.join("data")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "data" {
                let len = e.metadata().unwrap().len();
                if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                    biggest = Some((len, e.path()));
                }
            }
        }
    }
    let path = biggest.unwrap().1;
    let mut data = fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&path, data).unwrap();
    let root = base.join("root");
    let (ok, out) = reg.pull(&root, &format!("{}/ops/bad:1", reg.host()), "auth.json");
    assert!(!ok && out.contains("corrupted"), "{out}");
    let listing = Command::new(bin())
        .args(["images", "--root-dir"])
        .arg(&root)
        .arg("list")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listing.stdout).contains("ops/bad"),
        "no half image is usable"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_pod_runs_from_a_pulled_image_and_pull_errors_show_in_status() {
    let reg = Registry::start();
    let base = unique_dir("pull-pod");
    let layout = busybox_layout(&base);
    reg.push(&layout, "ops/web:2");
    let mut a = Agent::new("pullpod");
    let config = a.base.join("config.yaml");
    fs::write(
        &config,
        format!(
            "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\nconfigDir: {}\nimageCredentials: {}\n",
            reg.dir.join("etc").display(),
            reg.dir.join("auth.json").display()
        ),
    )
    .unwrap();
    a.extra_args = vec!["--config".into(), config.display().to_string()];
    a.start();
    let image = format!("{}/ops/web:2", reg.host());
    a.write_manifest(
        "pulled.yaml",
        &pod_yaml("pulled", "", "", "[sleep, '1000']").replace(IMAGE, &image),
    );
    a.wait_running("pulled", "main");
    assert!(a.agent_log().contains(&format!("image {image}: pulled")));
    let missing = format!("{}/ops/missing:1", reg.host());
    a.write_manifest(
        "missing.yaml",
        &pod_yaml("missing", "", "", "[sleep, '1']").replace(IMAGE, &missing),
    );
    let c = a.wait_container("missing", "main", "ImagePullBackOff", |c| {
        c["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("MANIFEST_UNKNOWN"),
        "{c}"
    );
    let _ = fs::remove_dir_all(base);
}

/// A minimal registry front that demands a bearer token (as Docker Hub, Harbor and GHCR do):
/// 401 with `WWW-Authenticate: Bearer realm=...`, a token endpoint that checks the basic
/// credentials, then blobs and manifests from an OCI layout.
#[test]
fn bearer_token_challenge_flow() {
    let base = unique_dir("bearer");
    let layout = busybox_layout(&base);
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let token_requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = token_requests.clone();
    let layout_dir = layout.clone();
    std::thread::spawn(move || {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout_dir.join("index.json")).unwrap()).unwrap();
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        for req in server.incoming_requests() {
            let url = req.url().to_string();
            let auth = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string())
                .unwrap_or_default();
            let resp = if url.starts_with("/token") {
                seen.lock().unwrap().push(format!("{url} {auth}"));
                if auth == "Basic Z2F0ZXdheTpzM2NyZXQ=" {
                    tiny_http::Response::from_string(r#"{"token":"tok-123"}"#)
                } else {
                    tiny_http::Response::from_string("{}").with_status_code(401)
                }
            } else if auth != "Bearer tok-123" {
                let challenge = format!(
                    r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry",scope="repository:ops/app:pull""#
                );
                tiny_http::Response::from_string("{}")
                    .with_status_code(401)
                    .with_header(
                        tiny_http::Header::from_bytes(
                            &b"WWW-Authenticate"[..],
                            challenge.as_bytes(),
                        )
                        .unwrap(),
                    )
            } else {
                let digest = if url.ends_with("/manifests/1") {
                    manifest_digest.clone()
                } else {
                    url.rsplit('/').next().unwrap().to_string()
                };
                match fs::read(
                    layout_dir
                        .join("blobs/sha256")
                        .join(digest.trim_start_matches("sha256:")),
                ) {
                    Ok(b) => tiny_http::Response::from_data(b),
                    Err(_) => tiny_http::Response::from_data(Vec::new()).with_status_code(404),
                }
            };
            let _ = req.respond(resp);
        }
    });
    let config = base.join("staticlet.yaml");
    fs::write(&config, format!("apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ninsecureRegistries: [\"127.0.0.1:{port}\"]\n")).unwrap();
    let creds = base.join("auth.json");
    fs::write(
        &creds,
        json!({"auths": {format!("127.0.0.1:{port}"): {"auth": "Z2F0ZXdheTpzM2NyZXQ="}}})
            .to_string(),
    )
    .unwrap();
    run_ok(
        Command::new(bin())
            .args(["images", "--config"])
            .arg(&config)
            .arg("--root-dir")
            .arg(base.join("root"))
            .args([
                "pull",
                &format!("127.0.0.1:{port}/ops/app:1"),
                "--image-credentials",
            ])
            .arg(&creds),
    );
    let requests = token_requests.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the token endpoint was asked");
    assert!(
        requests[0].contains("scope=repository%3Aops%2Fapp%3Apull")
            && requests[0].contains("service=fake-registry"),
        "{requests:?}"
    );
    let _ = fs::remove_dir_all(base);
}
