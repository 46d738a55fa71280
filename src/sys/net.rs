//! Outgoing HTTP(S) for the uplink-facing stages (manifest URL, registries): ureq with rustls
//! (ring), the system's CA store plus any private CA the user names, and a timeout on every
//! request. Nothing here is ever called on the path that starts or stops a container.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where Debian, Buildroot (ca-certificates) and most distributions keep the CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
}

fn pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>, CertError> {
    let bytes = std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The system's CA certificates, plus those in `extra` (each must hold at least one).
pub fn root_certs(extra: &[PathBuf]) -> Result<RootCerts, CertError> {
    let mut certs = Vec::new();
    if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
        certs.extend(pem_certs(bundle).unwrap_or_default());
    }
    for path in extra {
        certs.extend(pem_certs(path)?);
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

/// An agent with a global timeout (connect, send and receive all count), no redirects beyond
/// a few, and status codes returned rather than turned into errors.
pub fn agent(roots: RootCerts, timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(5)
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .user_agent(concat!("staticlet/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Explains a request error in the words a user needs (a certificate problem above all).
pub fn explain(e: &ureq::Error) -> String {
    let text = e.to_string();
    if text.contains("certificate")
        || text.contains("UnknownIssuer")
        || text.contains("InvalidCertificate")
    {
        format!("TLS certificate not trusted ({text}); give the CA that signed it (e.g. --manifest-url-ca-file, or certs.d/<host:port>/ca.crt for a registry)")
    } else {
        text
    }
}

/// Standard base64 (with or without padding), as in kubeconfig `-data` fields and Docker
/// `config.json` `auth` values.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("!!").is_none());
    }
}
