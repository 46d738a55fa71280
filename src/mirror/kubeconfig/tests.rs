use super::*;
use std::path::PathBuf;

/// A self-signed certificate and its PKCS#8 key (rcgen), as PEM.
fn pair() -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("stl-kc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn parse_yaml(
    text: &str,
    base: &Path,
    context: Option<&str>,
) -> Result<Kubeconfig, KubeconfigError> {
    let doc: Value = serde_yaml::from_str(text).unwrap();
    parse(&doc, Path::new("/etc/kc.yaml"), base, context)
}

fn field_of(e: KubeconfigError) -> (String, String) {
    match e {
        KubeconfigError::Field { field, message, .. } => (field, message),
        other => panic!("expected a field error, got {other}"),
    }
}

#[test]
fn base64_decodes_kubeconfig_data() {
    assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
    assert_eq!(decode_base64("aGVs\n bG8=\n").unwrap(), b"hello");
    assert_eq!(decode_base64("").unwrap(), b"");
    for bad in ["aGVsbG8=x", "a*b=", "aGVsbG9="] {
        assert!(decode_base64(bad).is_none(), "{bad:?}");
    }
    let data: Vec<u8> = (0..=255).collect();
    assert_eq!(decode_base64(&b64(&data)).unwrap(), data);
}

#[test]
fn inline_data_with_a_client_certificate() {
    let (ca, _) = pair();
    let (cert, key) = pair();
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: node\ncontexts:\n- name: node\n  context: {{cluster: c, user: u}}\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca.as_bytes()),
        b64(cert.as_bytes()),
        b64(key.as_bytes())
    );
    let kc = parse_yaml(&text, Path::new("/etc"), None).unwrap();
    assert_eq!(kc.server, "https://10.0.0.1:6443");
    assert_eq!(kc.context, "node");
    assert_eq!(kc.ca_pem.as_deref(), Some(ca.as_bytes()));
    assert!(kc.client_cert.is_some() && kc.token.is_none() && !kc.insecure);
    assert!(
        !format!("{kc:?}").contains("PRIVATE"),
        "Debug never shows the key"
    );

    // A key that is not the certificate's is refused here, not by a panic in the TLS stack.
    let (_, other_key) = pair();
    let text = text.replace(&b64(key.as_bytes()), &b64(other_key.as_bytes()));
    let (field, message) = field_of(parse_yaml(&text, Path::new("/etc"), None).unwrap_err());
    assert_eq!(field, "users[u].user.client-key");
    assert!(message.contains("does not fit"), "{message}");
}

#[test]
fn files_resolve_against_the_kubeconfig_directory() {
    let dir = temp_dir("files");
    let (ca, _) = pair();
    let (cert, key) = pair();
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    std::fs::write(dir.join("pki/node.crt"), &cert).unwrap();
    std::fs::write(dir.join("pki/node.key"), &key).unwrap();
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let text = "current-context: a\ncontexts:\n- {name: a, context: {cluster: c, user: cert}}\n- {name: b, context: {cluster: c, user: tok}}\nclusters:\n- {name: c, cluster: {server: 'https://gw:6443', certificate-authority: ca.crt}}\nusers:\n- {name: cert, user: {client-certificate: pki/node.crt, client-key: pki/node.key}}\n- {name: tok, user: {tokenFile: token}}\n";
    std::fs::write(dir.join("kubeconfig"), text).unwrap();
    let kc = load(&dir.join("kubeconfig"), None).unwrap();
    assert_eq!(kc.client_cert.as_ref().unwrap().0, cert.as_bytes());
    let kc = load(&dir.join("kubeconfig"), Some("b")).unwrap();
    assert_eq!(kc.token.as_deref(), Some("s3cret"));
    assert!(kc.client_cert.is_none());
    std::fs::remove_file(dir.join("pki/node.key")).unwrap();
    let e = load(&dir.join("kubeconfig"), None).unwrap_err().to_string();
    assert!(
        e.contains("users[cert].user.client-key") && e.contains("pki/node.key"),
        "{e}"
    );
    assert!(
        e.contains(&dir.join("kubeconfig").display().to_string()),
        "names the file: {e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_the_field() {
    let base = Path::new("/nonexistent");
    let ctx = "contexts:\n- {name: a, context: {cluster: c, user: u}}\n";
    let cases = [
        ("clusters: []\n", "current-context", "not set"),
        (&*format!("current-context: x\n{ctx}"), "contexts[x]", "no such entry"),
        (&*format!("current-context: a\n{ctx}clusters: []\n"), "clusters[c]", "no such entry"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: gw:6443}}}}\nusers:\n- {{name: u, user: {{}}}}\n"), "clusters[c].cluster.server", "not an http(s) URL"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: 'https://gw', certificate-authority-data: '!!'}}}}\nusers:\n- {{name: u, user: {{}}}}\n"), "clusters[c].cluster.certificate-authority-data", "base64"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: 'https://gw', certificate-authority-data: aGVsbG8=}}}}\nusers:\n- {{name: u, user: {{}}}}\n"), "clusters[c].cluster.certificate-authority", "no PEM certificate"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: 'https://gw'}}}}\nusers:\n- {{name: u, user: {{exec: {{command: aws}}}}}}\n"), "users[u].user.exec", "not supported"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: 'https://gw'}}}}\nusers:\n- {{name: u, user: {{client-key: k.pem}}}}\n"), "users[u].user.client-key", "/nonexistent/k.pem"),
        (&*format!("current-context: a\n{ctx}clusters:\n- {{name: c, cluster: {{server: 'https://gw'}}}}\nusers:\n- {{name: u, user: {{tokenFile: t}}}}\n"), "users[u].user.tokenFile", "/nonexistent/t"),
    ];
    for (text, field, msg) in cases {
        let (f, m) = field_of(parse_yaml(text, base, None).unwrap_err());
        assert_eq!(f, field, "{text}");
        assert!(m.contains(msg), "{text}: {m}");
    }
}

#[test]
fn insecure_only_without_a_ca() {
    let (ca, _) = pair();
    let head = "current-context: a\ncontexts:\n- {name: a, context: {cluster: c, user: u}}\nusers:\n- {name: u, user: {token: abc}}\n";
    let kc = parse_yaml(&format!("{head}clusters:\n- {{name: c, cluster: {{server: 'https://gw', insecure-skip-tls-verify: true}}}}\n"), Path::new("/"), None).unwrap();
    assert!(kc.insecure && kc.ca_pem.is_none());
    assert_eq!(kc.token.as_deref(), Some("abc"));
    let text = format!("{head}clusters:\n- {{name: c, cluster: {{server: 'https://gw', insecure-skip-tls-verify: true, certificate-authority-data: {}}}}}\n", b64(ca.as_bytes()));
    let (f, _) = field_of(parse_yaml(&text, Path::new("/"), None).unwrap_err());
    assert_eq!(f, "clusters[c].cluster.insecure-skip-tls-verify");
}
