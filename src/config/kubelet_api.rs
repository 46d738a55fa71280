//! The kubelet API's settings (`port`, `address`, `tlsCertFile`, `tlsPrivateKeyFile`,
//! `authentication`, `authorization`, with the KubeletConfiguration's names and defaults)
//! and the event buffer's bounds: decoded from the configuration file here, so `config.rs`
//! keeps the fields every agent has.

use crate::manifest::pod::QuantityValue;
use crate::manifest::quantity::Quantity;
use crate::sys::timefmt::parse_duration;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the kubelet API decides who may read logs (`authorization.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzMode {
    /// Ask the API server with a SubjectAccessReview (`nodes/proxy`, `nodes/log`...).
    Webhook,
    /// Every authenticated client may.
    AlwaysAllow,
}

/// The HTTPS server the API server reaches for `kubectl logs` (only with a kubeconfig).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletApi {
    /// 0 turns it off.
    pub port: u16,
    pub address: IpAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    /// Client certificates signed by this CA authenticate as their CN (user) and O (groups).
    pub client_ca_file: Option<PathBuf>,
    /// Bearer tokens are checked with a TokenReview.
    pub webhook_authn: bool,
    pub authn_cache_ttl: Duration,
    pub authz_mode: AuthzMode,
    pub authz_cache_authorized: Duration,
    pub authz_cache_unauthorized: Duration,
}

impl Default for KubeletApi {
    fn default() -> Self {
        KubeletApi {
            port: 10250,
            address: IpAddr::from([0, 0, 0, 0]),
            tls_cert_file: None,
            tls_private_key_file: None,
            client_ca_file: None,
            webhook_authn: true,
            authn_cache_ttl: Duration::from_secs(120),
            authz_mode: AuthzMode::Webhook,
            authz_cache_authorized: Duration::from_secs(300),
            authz_cache_unauthorized: Duration::from_secs(30),
        }
    }
}

pub fn parse_authz_mode(text: &str) -> Result<AuthzMode, String> {
    match text {
        "Webhook" => Ok(AuthzMode::Webhook),
        "AlwaysAllow" => Ok(AuthzMode::AlwaysAllow),
        _ => Err(format!("{text:?}: must be Webhook or AlwaysAllow")),
    }
}

pub fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address such as 0.0.0.0"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AuthnFile {
    x509: Option<X509File>,
    webhook: Option<WebhookAuthnFile>,
    anonymous: Option<AnonymousFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct X509File {
    #[serde(rename = "clientCAFile")]
    client_ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookAuthnFile {
    enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    cache_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AnonymousFile {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AuthzFile {
    mode: Option<String>,
    webhook: Option<WebhookAuthzFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookAuthzFile {
    #[serde(rename = "cacheAuthorizedTTL")]
    cache_authorized_ttl: Option<String>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    cache_unauthorized_ttl: Option<String>,
}

/// The file's kubelet API fields; `path_of` resolves a path relative to the file.
pub(super) struct ApiFields {
    pub port: Option<i64>,
    pub address: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub authentication: Option<AuthnFile>,
    pub authorization: Option<AuthzFile>,
}

/// `(field, message)` of the first problem.
type Invalid = (String, String);

fn duration(field: &str, text: Option<String>, slot: &mut Duration) -> Result<(), Invalid> {
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        *slot = parse_duration(&t).ok_or_else(|| {
            (
                field.to_string(),
                format!("{t:?} is not a duration such as 2m"),
            )
        })?;
    }
    Ok(())
}

pub(super) fn resolve(
    f: ApiFields,
    path_of: impl Fn(String) -> PathBuf,
) -> Result<KubeletApi, Invalid> {
    let mut k = KubeletApi::default();
    if let Some(p) = f.port {
        k.port = u16::try_from(p)
            .map_err(|_| ("port".to_string(), format!("{p}: must be 0 (off) to 65535")))?;
    }
    if let Some(a) = f.address.filter(|a| !a.is_empty()) {
        k.address = parse_address(&a).map_err(|m| ("address".to_string(), m))?;
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    k.tls_cert_file = non_empty(f.tls_cert_file).map(&path_of);
    k.tls_private_key_file = non_empty(f.tls_private_key_file).map(&path_of);
    if k.tls_cert_file.is_some() != k.tls_private_key_file.is_some() {
        return Err((
            "tlsCertFile".into(),
            "tlsCertFile and tlsPrivateKeyFile go together: give both, or neither for a self-signed certificate".into(),
        ));
    }
    let authn = f.authentication.unwrap_or_default();
    k.client_ca_file = non_empty(authn.x509.and_then(|x| x.client_ca_file)).map(&path_of);
    if let Some(w) = authn.webhook {
        k.webhook_authn = w.enabled.unwrap_or(true);
        duration(
            "authentication.webhook.cacheTTL",
            w.cache_ttl,
            &mut k.authn_cache_ttl,
        )?;
    }
    if authn.anonymous.and_then(|a| a.enabled) == Some(true) {
        return Err((
            "authentication.anonymous.enabled".into(),
            "staticlet's kubelet API never serves anonymous requests; set it to false".into(),
        ));
    }
    let authz = f.authorization.unwrap_or_default();
    if let Some(m) = non_empty(authz.mode) {
        k.authz_mode = parse_authz_mode(&m).map_err(|e| ("authorization.mode".to_string(), e))?;
    }
    if let Some(w) = authz.webhook {
        duration(
            "authorization.webhook.cacheAuthorizedTTL",
            w.cache_authorized_ttl,
            &mut k.authz_cache_authorized,
        )?;
        duration(
            "authorization.webhook.cacheUnauthorizedTTL",
            w.cache_unauthorized_ttl,
            &mut k.authz_cache_unauthorized,
        )?;
    }
    Ok(k)
}

/// `eventBufferMaxEvents` and `eventBufferMaxBytes`.
pub(super) fn event_limits(
    events: Option<u64>,
    bytes: Option<QuantityValue>,
) -> Result<crate::events::Limits, Invalid> {
    let mut l = crate::events::Limits::default();
    if let Some(n) = events {
        if !(10..=1_000_000).contains(&n) {
            return Err((
                "eventBufferMaxEvents".into(),
                format!("{n}: must be 10 to 1000000"),
            ));
        }
        l.events = n as usize;
    }
    if let Some(q) = bytes {
        l.bytes = Quantity::parse(&q.as_text())
            .map(|q| q.value())
            .filter(|v| (16 * 1024..=1 << 30).contains(v))
            .map(|v| v as usize)
            .ok_or_else(|| {
                (
                    "eventBufferMaxBytes".to_string(),
                    format!("{:?} must be a quantity from 16Ki to 1Gi", q.as_text()),
                )
            })?;
    }
    Ok(l)
}
