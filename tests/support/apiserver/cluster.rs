//! A kube-apiserver + etcd of one test, driven through the scripts next to this file
//! (`pki`, `start`, `stop`), and an admin client for it (HTTPS with the admin client
//! certificate). Stopped when dropped, also on panic (then the apiserver log's tail is
//! printed). Included by tests/mirror.rs with `#[path]`.

use crate::common::unique_dir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/apiserver")
}

pub fn k8s_bin() -> PathBuf {
    match std::env::var_os("STATICLET_K8S_BIN") {
        Some(b) => b.into(),
        None => PathBuf::from(
            std::env::var_os("STATICLET_CACHE").unwrap_or("/var/cache/staticlet-test".into()),
        )
        .join("k8s-v1.20.2"),
    }
}

pub fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(scripts().join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tests/support/apiserver/{name}: {e}"));
    assert!(
        out.status.success(),
        "tests/support/apiserver/{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// etcd + kube-apiserver of this test; stopped (both) when dropped, also on panic.
pub struct Cluster {
    pub dir: PathBuf,
    admin: ureq::Agent,
    pub url: String,
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        Cluster::start_with(tag, |_| Vec::new())
    }

    /// Like [`Cluster::start`], with more kube-apiserver flags (given the test's directory,
    /// where `pki` has put its files).
    pub fn start_with(tag: &str, flags: impl FnOnce(&Path) -> Vec<String>) -> Cluster {
        for b in ["kube-apiserver", "etcd"] {
            assert!(
                k8s_bin().join(b).is_file(),
                "{} is missing: run tests/support/apiserver/build (tests/setup-host does it; ~6 min once per machine)",
                k8s_bin().join(b).display()
            );
        }
        let dir = unique_dir(&format!("k8s-{tag}"));
        let d = dir.to_str().unwrap().to_string();
        script("pki", &[&d, "node1"]);
        let extra = flags(&dir);
        std::fs::write(dir.join("apiserver.flags"), extra.join("\n") + "\n").unwrap();
        let mut c = Cluster {
            admin: ureq::Agent::new_with_defaults(),
            url: String::new(),
            dir,
        };
        c.url = script("start", &[&d, "0", "0"]);
        let pem = |f: &str| std::fs::read(c.dir.join(f)).unwrap();
        let ca = ureq::tls::Certificate::from_pem(&pem("ca.crt")).unwrap();
        let cert = ureq::tls::Certificate::from_pem(&pem("admin.crt")).unwrap();
        let key = ureq::tls::PrivateKey::from_pem(&pem("admin.key")).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
            .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&[cert], key)))
            .build();
        c.admin = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        c
    }

    /// `cert` and `token` come from `pki`; `tokenfile` is written here: `tokenFile` and
    /// `certificate-authority` as paths relative to the kubeconfig.
    pub fn kubeconfig(&self, which: &str) -> String {
        let path = self.dir.join(format!("node-{which}.kubeconfig"));
        if which == "tokenfile" {
            let text = format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: node\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: ca.crt\nusers:\n- name: node\n  user:\n    tokenFile: node.token\ncontexts:\n- name: node\n  context: {{cluster: test, user: node}}\n",
                self.url
            );
            std::fs::write(&path, text).unwrap();
        }
        path.display().to_string()
    }

    /// An admin request; `(status code, body)`, code 0 when the server is not reachable.
    pub fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let text = body.map(|b| b.to_string());
        let r = match (method, text) {
            ("GET", _) => self.admin.get(&url).call(),
            ("POST", Some(t)) => self
                .admin
                .post(&url)
                .content_type("application/json")
                .send(&t),
            ("DELETE", Some(t)) => self
                .admin
                .delete(&url)
                .force_send_body()
                .content_type("application/json")
                .send(&t),
            ("DELETE", None) => self.admin.delete(&url).call(),
            _ => panic!("unsupported {method}"),
        };
        match r {
            Ok(mut r) => {
                let code = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (code, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// An admin GET whose body is read as it comes (a followed log): the reader, or the
    /// status code and body of a refusal.
    pub fn stream(&self, path: &str) -> Result<Box<dyn std::io::Read + Send>, (u16, String)> {
        let url = format!("{}{path}", self.url);
        let mut resp = self
            .admin
            .get(&url)
            .config()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .call()
            .map_err(|e| (0, e.to_string()))?;
        let code = resp.status().as_u16();
        if code != 200 {
            return Err((code, resp.body_mut().read_to_string().unwrap_or_default()));
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// The events of the object `name` (an Event list's items, oldest first).
    pub fn events_of(&self, name: &str) -> Vec<Value> {
        let path = format!("/api/v1/events?fieldSelector=involvedObject.name%3D{name}");
        let mut items = self
            .get(&path)
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default();
        items.sort_by(|a, b| {
            let key = |e: &Value| {
                (
                    e["firstTimestamp"].as_str().unwrap_or("").to_string(),
                    e["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        items
    }

    /// The audit log's entries (JSON lines), when the test asked for one.
    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let (code, v) = self.req("GET", path, None);
        (code == 200).then_some(v)
    }

    pub fn mirror(&self, ns: &str, name: &str) -> Option<Value> {
        self.get(&format!("/api/v1/namespaces/{ns}/pods/{name}-node1"))
    }

    pub fn stop_apiserver(&self) {
        script("stop", &[self.dir.to_str().unwrap(), "apiserver"]);
    }

    pub fn start_apiserver(&self) {
        let url = script(
            "start",
            &[self.dir.to_str().unwrap(), "0", "--apiserver-only"],
        );
        assert_eq!(
            url, self.url,
            "the apiserver must come back on the same port"
        );
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(scripts().join("stop"))
            .arg(&self.dir)
            .arg("all")
            .output();
        if std::thread::panicking() {
            eprintln!(
                "---- {}/apiserver.log (tail) ----\n{}",
                self.dir.display(),
                self.log_tail()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
