//! A kubeconfig client certificate in X.509 v1 form (what a plain `openssl x509 -req` makes)
//! is accepted, as Go's TLS (so the kubelet) accepts it, and is presented on the wire: a real
//! `openssl s_server` that requires a client certificate signed by its CA answers. A key that
//! does not belong to the certificate is still refused, naming the field.

use staticlet::mirror::api::{Api, HttpApi, Method};
use staticlet::mirror::kubeconfig;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a v3 server certificate for 127.0.0.1, and a v1 client certificate with its key.
fn pki(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stl-kcv1-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
    ];
    ca.extend(ec);
    openssl(&dir, &ca);
    for (name, subject) in [
        ("server", "/CN=127.0.0.1"),
        ("client", "/CN=system:node:n1/O=system:nodes"),
    ] {
        let (key, csr) = (format!("{name}.key"), format!("{name}.csr"));
        let mut req = vec![
            "req", "-new", "-keyout", &key, "-out", &csr, "-subj", subject,
        ];
        req.extend(ec);
        openssl(&dir, &req);
    }
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let sign = |name: &str, ext: Option<&str>| {
        let (csr, pem) = (format!("{name}.csr"), format!("{name}.pem"));
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
        ];
        if let Some(e) = ext {
            args.extend(["-extfile", e]);
        }
        openssl(&dir, &args);
    };
    sign("server", Some("san.ext"));
    sign("client", None);
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("client.pem"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "the client certificate is v1"
    );
    dir
}

fn kubeconfig(dir: &Path, port: u16, key: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\ncurrent-context: n\ncontexts:\n- name: n\n  context: {{cluster: c, user: u}}\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}', certificate-authority: ca.pem}}\nusers:\n- name: u\n  user: {{client-certificate: client.pem, client-key: {key}}}\n"),
    )
    .unwrap();
    path
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_v1_client_certificate_is_accepted_and_presented() {
    let dir = pki("wire");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // -Verify: a client certificate is required; -verify_return_error: a bad one ends the
    // handshake. -www answers any GET with a page.
    let _server = Server(
        Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "server.pem",
                "-key",
                "server.key",
                "-CAfile",
                "ca.pem",
                "-Verify",
                "1",
                "-verify_return_error",
                "-www",
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let kc = kubeconfig::load(&kubeconfig(&dir, port, "client.key"), None)
        .unwrap_or_else(|e| panic!("a v1 client certificate must be accepted: {e}"));
    let api = HttpApi::new(&kc, Duration::from_secs(5)).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match api.call(Method::Get, "/", None) {
            Ok(r) => break r,
            Err(e) if Instant::now() > end => panic!("s_server never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(reply.code, 200, "{:?}", reply.body);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_of_another_certificate_is_refused_by_name() {
    let dir = pki("mismatch");
    let err = kubeconfig::load(&kubeconfig(&dir, 1, "server.key"), None)
        .expect_err("a key that is not the certificate's is refused");
    let text = err.to_string();
    assert!(
        text.contains("client-key") && text.contains("does not fit the client certificate"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
