//! The API server seam: one small trait ([`Api`]) that sends a JSON request and returns the
//! status code and JSON body, with one real implementation over ureq (TLS by rustls, a
//! timeout on every call) and an in-memory fake for unit tests.
//!
//! Only a transport failure (refused, timed out, TLS) is an error here; every HTTP answer,
//! 4xx and 5xx included, is a [`Reply`] the sync interprets, because "namespace not found"
//! and "forbidden" are states to report, not failures of the link.
//!
//! A watch is long-lived, so it runs on a thread of its own ([`Api::start_watch`]) and hands
//! each event to the sync through a channel ([`WatchTx`]); the sync never waits for it.

use super::kubeconfig::Kubeconfig;
use serde_json::Value;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server could not be reached or did not answer in time.
    #[error("{method} {url}: {message}")]
    Unreachable {
        method: &'static str,
        url: String,
        message: String,
    },
    /// The TLS settings from the kubeconfig cannot be used.
    #[error("kubeconfig {path}: {field}: {message}")]
    Tls {
        path: String,
        field: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    /// A JSON merge patch (RFC 7386): lists are replaced whole, which is what status needs.
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An HTTP answer from the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: u16,
    /// The decoded JSON body (a `Status` for errors), or the raw text as a JSON string.
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// `reason` of a `Status`, e.g. `AlreadyExists`, `NotFound`, `Conflict`.
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
    /// The server's own words, as users should see them.
    pub fn message(&self) -> String {
        match (&self.body["message"], &self.body) {
            (Value::String(m), _) => m.clone(),
            (_, Value::String(text)) if !text.trim().is_empty() => {
                format!("HTTP {}: {}", self.code, text.trim())
            }
            _ => format!("HTTP {}", self.code),
        }
    }
}

/// Sends one request to the API server; `path` starts with `/`.
pub trait Api: Send + Sync + Clone + 'static {
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, ApiError>;
    /// Opens the watch `path` (with `watch=true`) and sends what it brings to `to` until it
    /// ends, the server closes it after `timeout`, or `to` is no longer wanted.
    fn start_watch(&self, path: String, timeout: Duration, to: WatchTx);
}

/// What a watch brings.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMsg {
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`, and the object.
    Event { kind: String, object: Value },
    /// 410 Gone: the resource version is too old; list again.
    Gone,
    /// The watch ended: by the server's timeout (None), or for the reason given.
    Ended(Option<String>),
}

/// The sending end of one watch: its messages, and a wake-up for the sync thread.
#[derive(Clone)]
pub struct WatchTx {
    pub tx: std::sync::mpsc::Sender<WatchMsg>,
    pub wake: std::sync::Arc<dyn Fn() + Send + Sync>,
}

impl WatchTx {
    /// False once the sync has given this watch up (the thread should end).
    pub fn send(&self, msg: WatchMsg) -> bool {
        let ok = self.tx.send(msg).is_ok();
        (self.wake)();
        ok
    }
}

/// The longest watch event line read (a Pod is at most about 1.5 MB in etcd).
const MAX_WATCH_LINE: u64 = 8 * 1024 * 1024;

/// The real client: one ureq agent (connections are kept and reused).
#[derive(Clone)]
pub struct HttpApi {
    agent: ureq::Agent,
    server: String,
    token: Option<String>,
}

impl HttpApi {
    pub fn new(kc: &Kubeconfig, timeout: Duration) -> Result<HttpApi, ApiError> {
        let tls_err = |field: &'static str, message: String| ApiError::Tls {
            path: kc.path.display().to_string(),
            field,
            message,
        };
        let mut tls = TlsConfig::builder()
            .disable_verification(kc.insecure)
            .unversioned_rustls_crypto_provider(super::kubeconfig::client_crypto_provider());
        let roots = match &kc.ca_pem {
            Some(pem) => Some(pem.clone()),
            // Without a CA in the kubeconfig, trust the system's (as kubectl does).
            None if !kc.insecure => Some(std::fs::read(SYSTEM_ROOTS).map_err(|e| {
                tls_err(
                    "certificate-authority",
                    format!("not set, and the system's {SYSTEM_ROOTS} cannot be read: {e}"),
                )
            })?),
            None => None,
        };
        if let Some(pem) = roots {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(tls_err(
                    "certificate-authority",
                    "no certificate in it".into(),
                ));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let Some((cert, key)) = &kc.client_cert {
            let (chain, key) = client_pair(cert, key).map_err(|(f, m)| tls_err(f, m))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .http_status_as_error(false)
            .user_agent(format!("staticlet/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpApi {
            agent,
            server: kc.server.clone(),
            token: kc.token.clone(),
        })
    }
}

const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Api for HttpApi {
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, ApiError> {
        let url = format!("{}{path}", self.server);
        let unreachable = |message: String| ApiError::Unreachable {
            method: method.as_str(),
            url: url.clone(),
            message,
        };
        let content_type = match method {
            Method::Patch => "application/merge-patch+json",
            _ => "application/json",
        };
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let text = body.map(Value::to_string).unwrap_or_default();
        macro_rules! with_headers {
            ($req:expr) => {{
                let r = $req.header("Accept", "application/json");
                match &auth {
                    Some(a) => r.header("Authorization", a.as_str()),
                    None => r,
                }
            }};
        }
        let result = match method {
            Method::Get => with_headers!(self.agent.get(&url)).call(),
            Method::Post => with_headers!(self.agent.post(&url))
                .content_type(content_type)
                .send(&text),
            Method::Put => with_headers!(self.agent.put(&url))
                .content_type(content_type)
                .send(&text),
            Method::Patch => with_headers!(self.agent.patch(&url))
                .content_type(content_type)
                .send(&text),
            Method::Delete if body.is_some() => with_headers!(self.agent.delete(&url))
                .force_send_body()
                .content_type(content_type)
                .send(&text),
            Method::Delete => with_headers!(self.agent.delete(&url)).call(),
        };
        let mut resp = result.map_err(|e| unreachable(e.to_string()))?;
        let code = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { code, body })
    }

    fn start_watch(&self, path: String, timeout: Duration, to: WatchTx) {
        let api = self.clone();
        let failed = to.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("mirror-watch".into())
            .spawn(move || {
                let end = api.watch(&path, timeout, &to);
                to.send(end);
            });
        if let Err(e) = spawned {
            // The sync retries the watch with backoff.
            let _ = failed.send(WatchMsg::Ended(Some(format!(
                "cannot start the watch thread: {e}"
            ))));
        }
    }
}

impl HttpApi {
    /// Runs one watch to its end; returns how it ended.
    fn watch(&self, path: &str, timeout: Duration, to: &WatchTx) -> WatchMsg {
        use std::io::{BufRead, Read};
        let url = format!("{}{path}", self.server);
        let mut req = self
            .agent
            .get(&url)
            .config()
            // The server ends the watch after `timeout`; a connection that dies silently is
            // given up a little later (the Lease, on another connection, notices sooner).
            .timeout_global(Some(timeout + Duration::from_secs(30)))
            .build()
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => return WatchMsg::Ended(Some(e.to_string())),
        };
        let code = resp.status().as_u16();
        if code != 200 {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let reply = Reply { code, body };
            return match code {
                410 => WatchMsg::Gone,
                _ => WatchMsg::Ended(Some(reply.message())),
            };
        }
        let reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut lines = std::io::BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = match (&mut lines)
                .take(MAX_WATCH_LINE)
                .read_until(b'\n', &mut line)
            {
                Ok(n) => n,
                Err(e) => return WatchMsg::Ended(Some(e.to_string())),
            };
            if n == 0 {
                return WatchMsg::Ended(None);
            }
            if !line.ends_with(b"\n") && n as u64 >= MAX_WATCH_LINE {
                return WatchMsg::Ended(Some("a watch event over 8 MiB".into()));
            }
            let Ok(mut v) = serde_json::from_slice::<Value>(&line) else {
                return WatchMsg::Ended(Some("a watch event that is not JSON".into()));
            };
            let kind = v["type"].as_str().unwrap_or_default().to_string();
            let object = v["object"].take();
            if kind == "ERROR" {
                let reply = Reply {
                    code: object["code"].as_u64().unwrap_or(500) as u16,
                    body: object,
                };
                return match reply.code {
                    410 => WatchMsg::Gone,
                    _ => WatchMsg::Ended(Some(reply.message())),
                };
            }
            if !to.send(WatchMsg::Event { kind, object }) {
                return WatchMsg::Ended(None);
            }
        }
    }
}

/// The client certificate chain and key from PEM, in ureq's types; `Err((field, message))`.
pub(crate) fn client_pair(
    cert: &[u8],
    key: &[u8],
) -> Result<(Vec<Certificate<'static>>, PrivateKey<'static>), (&'static str, String)> {
    let mut chain = Vec::new();
    for item in ureq::tls::parse_pem(cert) {
        match item {
            Ok(PemItem::Certificate(c)) => chain.push(c),
            Ok(_) => {}
            Err(e) => return Err(("client-certificate", format!("not PEM: {e}"))),
        }
    }
    if chain.is_empty() {
        return Err(("client-certificate", "no PEM certificate in it".into()));
    }
    let mut found = None;
    for item in ureq::tls::parse_pem(key) {
        match item {
            Ok(PemItem::PrivateKey(k)) => {
                found = Some(k);
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(("client-key", format!("not PEM: {e}"))),
        }
    }
    let key = found.ok_or((
        "client-key",
        "no PEM private key in it (RSA, PKCS#8 or EC)".to_string(),
    ))?;
    Ok((chain, key))
}
