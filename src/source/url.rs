//! The manifest URL (`staticPodURL`): a single Pod or a PodList, YAML or JSON, polled every
//! `httpCheckFrequency`, cached on disk so a gateway that boots offline starts the last pods
//! it was given.
//!
//! One request at a time, on its own thread, with a 10 s timeout and a 10 MB cap; failures
//! back off (doubling, with jitter) and never touch the pods: a non-200 answer, a network or
//! TLS error and an empty body all keep the current pods. `ETag`/`If-None-Match` are honoured,
//! and an unchanged body does nothing.
//!
//! Only a Pod or a PodList (`apiVersion: v1`) changes the URL pods and the cache, as in the
//! kubelet. Anything else answered with a 200 (a captive portal's or a proxy's page, a plain
//! string, an object of another kind) is refused: the pods and the cached body stay, and the
//! refusal is reported once, as a problem of the source (`/manifests`), until a good body
//! comes back.

use super::body::{parse_body, BodyError};
use super::trust::{self, Trust};
use super::{Snapshot, SourceKey};
use crate::manifest::MAX_MANIFEST_BYTES;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cache;
mod run;
pub use run::run;

pub const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The cached last good body's metadata (`<root>/url-cache/meta.json`). The body is
/// `body.<sha256>`, its signature (when signatures are required) `sig.<sha256>`; the version
/// before it is kept too, for a boot that finds the newest one damaged or tampered with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheMeta {
    pub url: String,
    pub etag: Option<String>,
    pub sha256: String,
    pub fetched_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<CacheMeta>>,
}

/// A manifest URL that cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("manifest URL {0:?} must start with https:// or http://")]
    Scheme(String),
    #[error("manifest URL CA file: {0}")]
    Ca(#[from] crate::sys::net::CertError),
}

pub struct UrlSource {
    pub url: String,
    headers: BTreeMap<String, Vec<String>>,
    agent: ureq::Agent,
    cache_dir: PathBuf,
    node: String,
    etag: Option<String>,
    body_sha: Option<String>,
    /// The last body refused, by hash, and why: the same body is not parsed again.
    refused: Option<(String, String)>,
    /// The network failure last logged, so that an outage is logged once.
    last_error: Option<String>,
    /// The last good snapshot sent, resent with or without a problem.
    last: Option<Snapshot>,
    /// The problem last sent with a snapshot.
    problem: Option<String>,
    /// Pinned keys: a body is applied only with a verifying `<url>.minisig`.
    trust: Option<std::sync::Arc<Trust>>,
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll {
    /// A new valid body: its pods.
    Changed(Snapshot),
    /// Nothing new (304, or the same body).
    Unchanged,
    /// The server could not be reached, or did not answer 200; the current pods stay.
    Failed(String),
    /// The server answered 200 with a body that is not a Pod or a PodList (or is empty, too
    /// large, unreadable): the current pods and the cache stay.
    Refused(String),
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

impl UrlSource {
    pub fn new(
        url: &str,
        headers: BTreeMap<String, Vec<String>>,
        ca_file: Option<&Path>,
        root_dir: &Path,
        node: &str,
    ) -> Result<UrlSource, UrlError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(UrlError::Scheme(url.to_string()));
        }
        if url.starts_with("http://") {
            log::warn!("manifest URL {url} is plain HTTP: pods are fetched without TLS (insecure)");
        }
        let extra: Vec<PathBuf> = ca_file.map(Path::to_path_buf).into_iter().collect();
        let roots = crate::sys::net::root_certs(&extra)?;
        let mut src = UrlSource {
            url: url.to_string(),
            headers,
            agent: crate::sys::net::agent(roots, TIMEOUT),
            cache_dir: root_dir.join("url-cache"),
            node: node.to_string(),
            etag: None,
            body_sha: None,
            refused: None,
            last_error: None,
            last: None,
            problem: None,
            trust: None,
        };
        if let Some(meta) = src.cached_meta() {
            src.etag = meta.etag;
            src.body_sha = Some(meta.sha256);
        }
        Ok(src)
    }

    /// Requires a signature by one of `trust`'s keys for every body, cached ones included:
    /// a cached body is trusted (and its ETag used) only if it verifies.
    pub fn with_trust(mut self, trust: Option<std::sync::Arc<Trust>>) -> Self {
        self.trust = trust;
        if self.trust.is_some() {
            let verified = self.cached().map(|(_, meta)| meta);
            self.etag = verified.as_ref().and_then(|m| m.etag.clone());
            self.body_sha = verified.map(|m| m.sha256);
        }
        self
    }

    /// `<url>.minisig`, before any query string, as minisign names a signature.
    fn signature_url(&self) -> String {
        match self.url.split_once('?') {
            Some((path, query)) => format!("{path}{}?{query}", trust::SUFFIX),
            None => format!("{}{}", self.url, trust::SUFFIX),
        }
    }

    pub fn key(&self) -> SourceKey {
        SourceKey::Url(self.url.clone())
    }

    /// Splits a body into one entry per pod; a body that is not a Pod or a PodList is an
    /// error. Fields the Pod API does not have are logged.
    pub fn parse(&self, body: &[u8]) -> Result<Snapshot, BodyError> {
        let items = parse_body(body, &self.url, &self.node)?;
        let mut entries = Vec::with_capacity(items.len());
        for (entry, unknown) in items {
            for u in unknown {
                log::warn!(
                    "{}: {}: {}; ignored, as the kubelet does (check the spelling)",
                    entry.origin.display(),
                    u.field,
                    u.message
                );
            }
            entries.push(entry);
        }
        Ok(Snapshot {
            key: self.key(),
            entries,
            complete: true,
            problem: None,
        })
    }

    /// One request. Writes the cache atomically when a new valid body arrives.
    pub fn poll(&mut self, now: &str) -> Poll {
        let mut req = self.agent.get(&self.url);
        for (k, values) in &self.headers {
            for v in values {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        if let Some(etag) = &self.etag {
            req = req.header("If-None-Match", etag.as_str());
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => {
                return Poll::Failed(format!("cannot fetch: {}", crate::sys::net::explain(&e)))
            }
        };
        let status = resp.status().as_u16();
        if status == 304 {
            return Poll::Unchanged;
        }
        if status != 200 {
            return Poll::Failed(format!("the server answered {status}"));
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let mut body = Vec::new();
        let read = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_BYTES as u64 + 1)
            .reader()
            .take(MAX_MANIFEST_BYTES as u64 + 1)
            .read_to_end(&mut body);
        if let Err(e) = read {
            return if e.to_string().contains("limit") {
                Poll::Refused("the body is larger than 10 MB".to_string())
            } else {
                Poll::Failed(format!("reading the body: {e}"))
            };
        }
        if body.len() > MAX_MANIFEST_BYTES {
            return Poll::Refused("the body is larger than 10 MB".into());
        }
        let sha = sha_hex(&body);
        if self.body_sha.as_deref() == Some(sha.as_str()) {
            self.etag = etag;
            return Poll::Unchanged;
        }
        if let Some((refused_sha, why)) = &self.refused {
            if *refused_sha == sha {
                return Poll::Refused(why.clone());
            }
        }
        let signature = match &self.trust {
            Some(t) => {
                let sig = match self.fetch_signature() {
                    Ok(sig) => sig,
                    Err(e) => return Poll::Failed(e),
                };
                if let Err(e) = t.verify(&body, sig.as_deref(), &self.url) {
                    return Poll::Refused(e.to_string());
                }
                sig
            }
            None => None,
        };
        let snap = match self.parse(&body) {
            Ok(s) => s,
            Err(e) => {
                self.refused = Some((sha, e.to_string()));
                return Poll::Refused(e.to_string());
            }
        };
        let meta = CacheMeta {
            url: self.url.clone(),
            etag: etag.clone(),
            sha256: sha.clone(),
            fetched_at: now.to_string(),
            previous: self.cached_meta().filter(|m| m.sha256 != sha).map(|mut m| {
                m.previous = None;
                Box::new(m)
            }),
        };
        if let Err(e) = self.save_cache(&body, signature.as_deref(), &meta) {
            log::warn!("cannot cache the manifest body from {}: {e}", self.url);
        }
        self.etag = etag;
        self.body_sha = Some(sha);
        Poll::Changed(snap)
    }

    /// `<url>.minisig`: `None` when the server has none (404), an error when it cannot be
    /// asked (the pods stay; the next poll tries again).
    fn fetch_signature(&self) -> Result<Option<Vec<u8>>, String> {
        let url = self.signature_url();
        let mut req = self.agent.get(&url);
        for (k, values) in &self.headers {
            for v in values {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let mut resp = req
            .call()
            .map_err(|e| format!("cannot fetch {url}: {}", crate::sys::net::explain(&e)))?;
        match resp.status().as_u16() {
            200 => {}
            404 | 410 => return Ok(None),
            s => return Err(format!("{url}: the server answered {s}")),
        }
        let mut sig = Vec::new();
        resp.body_mut()
            .with_config()
            .limit(trust::MAX_SIGNATURE_BYTES as u64 + 1)
            .reader()
            .take(trust::MAX_SIGNATURE_BYTES as u64 + 1)
            .read_to_end(&mut sig)
            .map_err(|e| format!("reading {url}: {e}"))?;
        Ok(Some(sig))
    }

    /// Logs a network failure once per distinct message, and the recovery.
    fn report(&mut self, error: Option<String>) {
        if error != self.last_error {
            match &error {
                Some(e) => log::warn!("manifest URL {}: {e}; keeping the current pods", self.url),
                None if self.last_error.is_some() => {
                    log::info!("manifest URL {} answers again", self.url)
                }
                None => {}
            }
            self.last_error = error;
        }
    }

    /// The snapshot to send when the source's problem changes: the last good reading (or,
    /// before there is one, an incomplete empty one, which removes nothing) with the problem.
    /// `None` when the problem is the one already sent.
    fn problem_changed(&mut self, problem: Option<String>) -> Option<Snapshot> {
        if problem == self.problem {
            return None;
        }
        self.problem = problem.clone();
        let mut snap = self.last.clone().unwrap_or_else(|| Snapshot {
            key: self.key(),
            entries: Vec::new(),
            complete: false,
            problem: None,
        });
        snap.problem = problem;
        Some(snap)
    }
}
