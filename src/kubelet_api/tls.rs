//! TLS for the kubelet API: the serving certificate (from `tlsCertFile`/`tlsPrivateKeyFile`,
//! else a self-signed one made once and kept in `<rootDir>/pki/`, as the kubelet keeps
//! `kubelet.crt`), client certificates verified against `clientCAFile` (optional: a client
//! may instead bring a bearer token), and the identity a verified certificate carries: the
//! subject's CN is the user, each O a group, as Kubernetes reads them.

use crate::config::KubeletApi;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{field} {}: {message}", path.display())]
    File {
        field: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the serving certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error("generating a self-signed serving certificate in {}: {message}", dir.display())]
    SelfSigned { dir: PathBuf, message: String },
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub uid: String,
    pub groups: Vec<String>,
}

fn file_err(field: &'static str, path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        field,
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS configuration.
pub fn server_config(
    k: &KubeletApi,
    root_dir: &Path,
    names: &[String],
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (&k.tls_cert_file, &k.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => self_signed(&root_dir.join("pki"), names)?,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err("tlsCertFile", &cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err("tlsCertFile", &cert_path, e))?;
    if chain.is_empty() {
        return Err(file_err(
            "tlsCertFile",
            &cert_path,
            "no PEM certificate in it",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| file_err("tlsPrivateKeyFile", &key_path, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &k.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| file_err("authentication.x509.clientCAFile", ca, e))?;
            for c in certs {
                let c = c.map_err(|e| file_err("authentication.x509.clientCAFile", ca, e))?;
                roots
                    .add(c)
                    .map_err(|e| file_err("authentication.x509.clientCAFile", ca, e))?;
            }
            if roots.is_empty() {
                return Err(file_err(
                    "authentication.x509.clientCAFile",
                    ca,
                    "no PEM certificate in it",
                ));
            }
            // A client without a certificate may still bring a bearer token.
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| file_err("authentication.x509.clientCAFile", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `<dir>/kubelet.crt` and `kubelet.key`: taken as they are when both exist, else made now
/// (ECDSA P-256, valid ten years, for `names`: the node's names and addresses).
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let fail = |message: String| TlsError::SelfSigned {
        dir: dir.to_path_buf(),
        message,
    };
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| fail(e.to_string()))?;
    let now = std::time::SystemTime::now();
    let today = crate::sys::timefmt::rfc3339(now);
    let ymd = |s: &str| -> Option<(i32, u8, u8)> {
        Some((
            s.get(0..4)?.parse().ok()?,
            s.get(5..7)?.parse().ok()?,
            s.get(8..10)?.parse().ok()?,
        ))
    };
    if let Some((y, m, d)) = ymd(&today) {
        params.not_before = rcgen::date_time_ymd(y, m, d);
        params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
    }
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let first = names.first().map_or("staticlet", String::as_str);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{first}@{unix}"));
    let key_pair = rcgen::KeyPair::generate().map_err(|e| fail(e.to_string()))?;
    let made = params
        .self_signed(&key_pair)
        .map_err(|e| fail(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    // The key first: a certificate without its key would be taken as complete next time.
    crate::sys::fsutil::write_atomic(&key, key_pair.serialize_pem().as_bytes())
        .map_err(|e| fail(format!("{}: {e}", key.display())))?;
    crate::sys::fsutil::write_atomic(&cert, made.pem().as_bytes())
        .map_err(|e| fail(format!("{}: {e}", cert.display())))?;
    log::info!(
        "kubelet API: made a self-signed serving certificate {} for {}",
        cert.display(),
        names.join(", ")
    );
    Ok((cert, key))
}

/// The names the self-signed certificate is made for.
pub fn serving_names(node: &str, node_ip: Option<IpAddr>) -> Vec<String> {
    let mut names = vec![node.to_string()];
    let host = crate::config::default_node_name();
    let ip = node_ip.map_or_else(crate::network::host_ip, |i| i.to_string());
    for n in [host, "localhost".to_string(), ip, "127.0.0.1".to_string()] {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The identity of a client certificate that rustls has verified against the client CA:
/// CN is the user, every O a group. None when the subject has no CN.
pub fn identity(cert: &CertificateDer<'_>) -> Option<Identity> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    // webpki gives the subject's contents; put the SEQUENCE back around them to parse it.
    let name = yasna::construct_der(|w| w.write_sequence(|w| w.next().write_der(parsed.subject())));
    let attrs = yasna::parse_der(&name, |r| {
        let mut out = Vec::new();
        r.read_sequence_of(|r| {
            r.read_set_of(|r| {
                r.read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let value = r.next().read_tagged_der()?;
                    out.push((oid.components().clone(), value));
                    Ok(())
                })
            })
        })?;
        Ok(out)
    })
    .ok()?;
    let text = |v: &yasna::models::TaggedDerValue| String::from_utf8_lossy(v.value()).into_owned();
    let (mut user, mut groups) = (None, Vec::new());
    for (oid, value) in &attrs {
        match oid.as_slice() {
            [2, 5, 4, 3] if user.is_none() => user = Some(text(value)),
            [2, 5, 4, 10] => groups.push(text(value)),
            _ => {}
        }
    }
    Some(Identity {
        user: user.filter(|u| !u.is_empty())?,
        uid: String::new(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_subject_gives_user_and_groups() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        let cert = params.self_signed(&key).unwrap();
        let id = identity(cert.der()).unwrap();
        assert_eq!(id.user, "kube-apiserver-kubelet-client");
        assert_eq!(id.groups, ["system:masters"]);

        let bare = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut bare = bare;
        bare.distinguished_name = rcgen::DistinguishedName::new();
        let cert = bare.self_signed(&key).unwrap();
        assert_eq!(identity(cert.der()), None, "no CN: no user");
        assert_eq!(identity(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn the_self_signed_certificate_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("stl-selfsigned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = vec!["node1".to_string(), "127.0.0.1".to_string()];
        let (c, k) = self_signed(&dir, &names).unwrap();
        let first = std::fs::read(&c).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o077,
            0
        );
        self_signed(&dir, &names).unwrap();
        assert_eq!(std::fs::read(&c).unwrap(), first, "kept, not made again");
        let config = KubeletApi::default();
        server_config(&config, &dir.join("none"), &names).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
