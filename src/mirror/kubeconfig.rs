//! Reads the kubeconfig the mirror sync talks to the API server with, the subset a node
//! needs: one context's server, CA, client certificate and key, or bearer token.
//!
//! Everything is checked here, at start, so a bad kubeconfig is a usage error naming the file
//! and the field instead of a sync thread that fails forever (or a TLS library that panics on
//! a key that does not match its certificate).

use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {}: cannot parse: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("kubeconfig {}: {field}: {message}", path.display())]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// How to reach and authenticate to the API server.
#[derive(Clone)]
pub struct Kubeconfig {
    pub path: PathBuf,
    pub context: String,
    /// The server URL without a trailing slash, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// PEM certificates to trust; `None` with `insecure` false means the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    /// PEM client certificate chain and private key (PKCS#1, PKCS#8 or SEC1).
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Kubeconfig {
    // Never print the key or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("path", &self.path)
            .field("context", &self.context)
            .field("server", &self.server)
            .field("insecure", &self.insecure)
            .field("client_cert", &self.client_cert.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

pub fn load(path: &Path, context: Option<&str>) -> Result<Kubeconfig, KubeconfigError> {
    let text = std::fs::read(path).map_err(|source| KubeconfigError::Io {
        path: path.into(),
        source,
    })?;
    let doc: Value = serde_yaml::from_slice(&text).map_err(|e| KubeconfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&doc, path, base, context)
}

/// Resolves `doc` (a parsed kubeconfig); relative file names are taken from `base`.
pub fn parse(
    doc: &Value,
    path: &Path,
    base: &Path,
    context: Option<&str>,
) -> Result<Kubeconfig, KubeconfigError> {
    let err = |field: &str, message: String| KubeconfigError::Field {
        path: path.into(),
        field: field.into(),
        message,
    };
    let context = match context {
        Some(c) => c.to_string(),
        None => match doc["current-context"].as_str() {
            Some(c) if !c.is_empty() => c.to_string(),
            _ => {
                return Err(err(
                    "current-context",
                    "not set; give --kubeconfig-context".into(),
                ))
            }
        },
    };
    let find = |list: &str, name: &str, inner: &str| -> Result<Value, KubeconfigError> {
        doc[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e[inner].clone())
            .ok_or_else(|| err(&format!("{list}[{name}]"), "no such entry".into()))
    };
    let ctx = find("contexts", &context, "context")?;
    let cluster_name = ctx["cluster"].as_str().unwrap_or_default().to_string();
    if cluster_name.is_empty() {
        return Err(err(
            &format!("contexts[{context}].context.cluster"),
            "missing".into(),
        ));
    }
    let cluster = find("clusters", &cluster_name, "cluster")?;
    let user_name = ctx["user"].as_str().unwrap_or_default().to_string();
    let user = if user_name.is_empty() {
        Value::Null
    } else {
        find("users", &user_name, "user")?
    };
    let cfield = |f: &str| format!("clusters[{cluster_name}].cluster.{f}");
    let ufield = |f: &str| format!("users[{user_name}].user.{f}");

    let server = cluster["server"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return Err(err(
            &cfield("server"),
            format!("{server:?} is not an http(s) URL"),
        ));
    }
    let insecure = cluster["insecure-skip-tls-verify"]
        .as_bool()
        .unwrap_or(false);
    let ca_pem =
        bytes_of(&cluster, "certificate-authority", base).map_err(|(f, m)| err(&cfield(&f), m))?;
    if let Some(pem) = &ca_pem {
        if insecure {
            return Err(err(
                &cfield("insecure-skip-tls-verify"),
                "a certificate authority with the insecure flag is not allowed (as for kubectl)"
                    .into(),
            ));
        }
        check_certs(pem).map_err(|m| err(&cfield("certificate-authority"), m))?;
    }

    for unsupported in ["exec", "auth-provider", "username", "password"] {
        if !user[unsupported].is_null() {
            return Err(err(
                &ufield(unsupported),
                "not supported by staticlet; use a client certificate or a token".into(),
            ));
        }
    }
    let cert = bytes_of(&user, "client-certificate", base).map_err(|(f, m)| err(&ufield(&f), m))?;
    let key = bytes_of(&user, "client-key", base).map_err(|(f, m)| err(&ufield(&f), m))?;
    let client_cert = match (cert, key) {
        (Some(c), Some(k)) => {
            check_client_pair(&c, &k).map_err(|(f, m)| err(&ufield(f), m))?;
            Some((c, k))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                &ufield("client-key"),
                "missing (client-certificate is set)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                &ufield("client-certificate"),
                "missing (client-key is set)".into(),
            ))
        }
    };
    let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (Some(t), _) if !t.is_empty() => Some(t.trim().to_string()),
        (_, Some(f)) if !f.is_empty() => {
            let file = base.join(f);
            let t = std::fs::read_to_string(&file)
                .map_err(|e| err(&ufield("tokenFile"), format!("{}: {e}", file.display())))?;
            Some(t.trim().to_string())
        }
        _ => None,
    };
    if token.as_deref() == Some("") {
        return Err(err(&ufield("token"), "empty".into()));
    }
    Ok(Kubeconfig {
        path: path.into(),
        context,
        server: server.to_string(),
        ca_pem,
        insecure,
        client_cert,
        token,
    })
}

/// `<name>-data` (base64) or `<name>` (a file, relative to `base`); `Err((field, message))`.
fn bytes_of(section: &Value, name: &str, base: &Path) -> Result<Option<Vec<u8>>, (String, String)> {
    let data_field = format!("{name}-data");
    if let Some(b64) = section[&data_field].as_str().filter(|s| !s.is_empty()) {
        return decode_base64(b64)
            .map(Some)
            .ok_or_else(|| (data_field, "not valid base64".into()));
    }
    match section[name].as_str().filter(|s| !s.is_empty()) {
        Some(file) => {
            let file = base.join(file);
            std::fs::read(&file)
                .map(Some)
                .map_err(|e| (name.to_string(), format!("{}: {e}", file.display())))
        }
        None => Ok(None),
    }
}

fn check_certs(pem: &[u8]) -> Result<(), String> {
    let mut n = 0;
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(_)) => n += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("not PEM: {e}")),
        }
    }
    if n == 0 {
        return Err("no PEM certificate in it".into());
    }
    Ok(())
}

/// Parses the pair as ureq will, and checks that the key belongs to the certificate, as Go's
/// `tls.X509KeyPair` does (`private key does not match public key`).
///
/// rustls' own check parses the certificate with webpki, which refuses X.509 v1 certificates
/// (what a plain `openssl x509 -req` makes); Go's TLS, so the kubelet, accepts them. So the
/// key's SubjectPublicKeyInfo, in the DER the certificate carries it in, is looked for in the
/// certificate, and [`client_crypto_provider`] stops rustls from repeating the check.
fn check_client_pair(cert: &[u8], key: &[u8]) -> Result<(), (&'static str, String)> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    super::api::client_pair(cert, key)?;
    let leaf = CertificateDer::pem_slice_iter(cert)
        .next()
        .ok_or(("client-certificate", "no PEM certificate in it".to_string()))?
        .map_err(|e| ("client-certificate", format!("not PEM: {e}")))?;
    let key =
        PrivateKeyDer::from_pem_slice(key).map_err(|e| ("client-key", format!("not PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| ("client-key", format!("not a usable private key: {e}")))?;
    let Some(spki) = signing.public_key() else {
        return Ok(());
    };
    let fits = leaf
        .as_ref()
        .windows(spki.as_ref().len())
        .any(|w| w == spki.as_ref());
    if !fits {
        return Err((
            "client-key",
            "does not fit the client certificate: the private key does not match its public key"
                .into(),
        ));
    }
    Ok(())
}

/// ring's provider for ureq, with keys that do not tell rustls their public key, so that
/// rustls skips its key/certificate consistency check (already made by
/// [`check_client_pair`]), which would refuse, even panic in ureq on, a v1 certificate.
pub fn client_crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.key_provider = &KeysWithoutSpki;
    std::sync::Arc::new(provider)
}

#[derive(Debug)]
struct KeysWithoutSpki;

impl rustls::crypto::KeyProvider for KeysWithoutSpki {
    fn load_private_key(
        &self,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<std::sync::Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        let inner = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)?;
        Ok(std::sync::Arc::new(KeyWithoutSpki(inner)))
    }
}

#[derive(Debug)]
struct KeyWithoutSpki(std::sync::Arc<dyn rustls::sign::SigningKey>);

impl rustls::sign::SigningKey for KeyWithoutSpki {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        self.0.choose_scheme(offered)
    }
    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.0.algorithm()
    }
}

/// Standard base64 with padding, as kubeconfig `*-data` fields use; whitespace is ignored.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => return None,
        };
        if pad > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be padding zeros, and at most two `=`.
    (pad <= 2 && bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests;
