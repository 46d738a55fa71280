//! A registry client for the OCI distribution API: anonymous, bearer-token challenge, or
//! basic auth from a Docker `config.json`; TLS with the system CAs plus
//! `<configDir>/certs.d/<host:port>/ca.crt`; plain HTTP only for registries listed as insecure.
//!
//! Timeouts suit a narrow uplink: connecting has 30 s, and after that only progress counts
//! (no byte for the idle timeout, 60 s by default, as the kubelet's image pull progress
//! deadline), so a large layer at 512 kbit/s downloads however long it takes. Manifests and
//! tokens, small by nature, also have a total deadline of 60 s.

use super::ImageError;
use super::Reference;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;
use ureq::tls::TlsConfig;

/// How long a transfer may make no progress, as the kubelet's image pull progress deadline.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where credentials and private CAs come from.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub config_dir: PathBuf,
    pub insecure: Vec<String>,
    pub credentials: Option<PathBuf>,
    /// A transfer that makes no progress for this long fails (and resumes at the next try).
    pub idle_timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            config_dir: PathBuf::new(),
            insecure: Vec::new(),
            credentials: None,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Manifests and tokens are small: they keep a total deadline, so a registry that trickles
/// them cannot hold a pull for ever.
const SMALL_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const MAX_MANIFEST: u64 = 4 * 1024 * 1024;
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub(super) struct Client {
    agent: ureq::Agent,
    pub(super) base: String,
    pub(super) registry: String,
    pub(super) repo: String,
    basic: Option<String>,
    token: Option<String>,
}

pub(super) fn err(registry: &str, message: impl Into<String>) -> ImageError {
    ImageError::Registry {
        registry: registry.to_string(),
        message: message.into(),
    }
}

/// `user:password` for `host` from a Docker config.json `auths` section, base64 as stored.
fn basic_auth(options: &PullOptions, host: &str) -> Option<String> {
    let path = options.credentials.as_ref()?;
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let keys = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/v1/"),
    ];
    let docker_hub = [
        "https://index.docker.io/v1/".to_string(),
        "docker.io".to_string(),
    ];
    let entry = keys
        .iter()
        .chain(if host == "registry-1.docker.io" {
            docker_hub.iter()
        } else {
            [].iter()
        })
        .find_map(|k| auths.get(k))?;
    let auth = entry.get("auth")?.as_str()?;
    crate::sys::net::base64_decode(auth).filter(|d| d.contains(&b':'))?;
    Some(auth.to_string())
}

/// Parses `Bearer realm="...",service="...",scope="..."`.
fn challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(stripped) = after.strip_prefix('"') {
            let end = stripped.find('"')?;
            (stripped[..end].to_string(), &stripped[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        params.push((key.trim().to_ascii_lowercase(), value));
        rest = next.trim_start_matches([',', ' ']);
    }
    Some((scheme.to_ascii_lowercase(), params))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Client {
    pub(super) fn new(reference: &Reference, options: &PullOptions) -> Result<Client, ImageError> {
        let host = if reference.domain == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            reference.domain.clone()
        };
        let insecure = options
            .insecure
            .iter()
            .any(|r| r == &reference.domain || r == &host);
        let ca = options
            .config_dir
            .join("certs.d")
            .join(&reference.domain)
            .join("ca.crt");
        let extra: Vec<PathBuf> = ca.exists().then_some(ca).into_iter().collect();
        let roots = crate::sys::net::root_certs(&extra).map_err(|e| err(&host, e.to_string()))?;
        Ok(Client {
            agent: ureq::Agent::config_builder()
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_per_read(Some(options.idle_timeout))
                .timeout_per_write(Some(options.idle_timeout))
                .http_status_as_error(false)
                .max_redirects(5)
                .tls_config(TlsConfig::builder().root_certs(roots).build())
                .user_agent(concat!("staticlet/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            base: format!(
                "{}://{host}/v2/{}",
                if insecure { "http" } else { "https" },
                reference.path
            ),
            basic: basic_auth(options, &host).or_else(|| basic_auth(options, &reference.domain)),
            registry: host,
            repo: reference.path.clone(),
            token: None,
        })
    }

    /// GETs `url`, answering an authentication challenge once.
    pub(super) fn get(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        total: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ImageError> {
        for attempt in 0..2 {
            let mut req = self.agent.get(url).config().timeout_global(total).build();
            for (name, value) in headers {
                req = req.header(*name, *value);
            }
            if let Some(t) = &self.token {
                req = req.header("Authorization", &format!("Bearer {t}"));
            } else if let (Some(b), true) = (&self.basic, attempt > 0) {
                req = req.header("Authorization", &format!("Basic {b}"));
            }
            let resp = req
                .call()
                .map_err(|e| err(&self.registry, crate::sys::net::explain(&e)))?;
            if resp.status().as_u16() != 401 || attempt > 0 {
                return Ok(resp);
            }
            let header = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            match challenge(&header) {
                Some((scheme, params)) if scheme == "bearer" => self.token = Some(self.fetch_token(&params)?),
                Some((scheme, _)) if scheme == "basic" && self.basic.is_some() => {}
                Some((scheme, _)) if scheme == "basic" => return Err(err(&self.registry, "the registry asks for credentials and none are configured for it (docker config.json auths, or --image-credentials)")),
                _ => return Err(err(&self.registry, format!("401 with an unusable challenge {header:?}"))),
            }
        }
        Err(err(
            &self.registry,
            format!("{url}: still 401 after authenticating"),
        ))
    }

    fn fetch_token(&self, params: &[(String, String)]) -> Result<String, ImageError> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let realm =
            get("realm").ok_or_else(|| err(&self.registry, "bearer challenge without a realm"))?;
        let scope = get("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repo));
        let mut url = format!("{realm}?scope={}", percent_encode(&scope));
        if let Some(service) = get("service") {
            url.push_str(&format!("&service={}", percent_encode(&service)));
        }
        let mut req = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(SMALL_TIMEOUT))
            .build();
        if let Some(b) = &self.basic {
            req = req.header("Authorization", &format!("Basic {b}"));
        }
        let mut resp = req.call().map_err(|e| {
            err(
                &self.registry,
                format!("token from {realm}: {}", crate::sys::net::explain(&e)),
            )
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_string()
            .unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(err(
                &self.registry,
                format!(
                    "authentication failed (wrong credentials?): {}",
                    body.trim()
                ),
            ));
        }
        let v: Value = serde_json::from_str(&body).map_err(|_| {
            err(
                &self.registry,
                format!("token endpoint answered {status}: {}", body.trim()),
            )
        })?;
        v.get("token")
            .or_else(|| v.get("access_token"))
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| err(&self.registry, "the token endpoint returned no token"))
    }

    /// A manifest or index by tag or digest; verified when asked by digest.
    pub(super) fn manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/manifests/{reference}", self.base);
        let mut resp = self.get(&url, &[("Accept", ACCEPT)], Some(SMALL_TIMEOUT))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| err(&self.registry, e.to_string()))?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(err(
                    &self.registry,
                    format!(
                        "access denied to {} (wrong credentials?): {}",
                        self.repo,
                        String::from_utf8_lossy(&body).trim()
                    ),
                ))
            }
            _ => {
                return Err(err(
                    &self.registry,
                    format!(
                        "manifest {}:{reference}: {status} {}",
                        self.repo,
                        String::from_utf8_lossy(&body).trim()
                    ),
                ))
            }
        }
        let digest = format!(
            "sha256:{}",
            Sha256::digest(&body)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        if reference.starts_with("sha256:") && digest != reference {
            return Err(ImageError::Corrupt {
                origin: format!("{}/{}", self.registry, self.repo),
                expected: reference.into(),
                actual: digest,
            });
        }
        Ok((body, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (scheme, p) = challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:ops/app:pull""#).unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:ops/app:pull".into()));
        let (scheme, p) = challenge("Basic realm=\"Registry Realm\"").unwrap();
        assert_eq!((scheme.as_str(), p.len()), ("basic", 1));
    }

    #[test]
    fn finds_credentials_by_host() {
        let dir = std::env::temp_dir().join(format!("staticlet-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        std::fs::write(&file, r#"{"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYXNz"}, "https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="}}}"#).unwrap();
        let o = PullOptions {
            credentials: Some(file),
            ..Default::default()
        };
        assert_eq!(
            basic_auth(&o, "127.0.0.1:5000").as_deref(),
            Some("dXNlcjpwYXNz")
        );
        assert_eq!(
            basic_auth(&o, "registry-1.docker.io").as_deref(),
            Some("aHViOmh1Yg==")
        );
        assert_eq!(basic_auth(&o, "other:1"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
