//! Who may use the kubelet API, decided as the kubelet decides (pkg/kubelet/server/auth.go):
//!
//! - authentication: a client certificate verified against `clientCAFile` (user = CN,
//!   groups = O), else a bearer token checked with a TokenReview (when
//!   `authentication.webhook.enabled`); anything else is 401. Anonymous requests are never
//!   served.
//! - authorization: in `Webhook` mode a SubjectAccessReview asks the API server whether the
//!   user may `<verb>` the subresource of `nodes/<node>` the path maps to (`proxy` for
//!   `/containerLogs` and `/healthz`, `log` for `/logs/`...); `AlwaysAllow` lets every
//!   authenticated user in. A denial is 403 naming user, verb, resource and subresource.
//!
//! Answers are cached as the kubelet caches them (tokens 2 minutes, allowed 5 minutes,
//! denied 30 seconds), so `kubectl logs -f` costs the API server one review, not one per
//! request; the reviews run on threads of their own, a few at a time.

use super::tls::Identity;
use crate::config::{AuthzMode, KubeletApi};
use crate::mirror::api::{Api, Method};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The request as an authorization check sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

/// The kubelet's mapping of a request to `nodes/<subresource>` and a verb.
pub fn attributes(method: &hyper::Method, path: &str) -> Attributes {
    let verb = match *method {
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        _ => "get",
    };
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

/// A refused request: the status code and the kubelet's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

/// A small cache with a time to live per entry; bounded, so random tokens cannot grow it.
pub struct Cache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub fn new(max: usize) -> Self {
        Cache {
            entries: HashMap::new(),
            max,
        }
    }

    pub fn get(&self, k: &K, now: Instant) -> Option<V> {
        self.entries
            .get(k)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    pub fn put(&mut self, k: K, v: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.max {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= self.max {
                self.entries.clear();
            }
        }
        self.entries.insert(k, (v, now + ttl));
    }
}

/// Reviews at once; more wait (a flood of bad tokens must not take every thread).
const REVIEWS_AT_ONCE: usize = 4;

pub struct Auth<A: Api> {
    api: A,
    settings: KubeletApi,
    node: String,
    tokens: RefCell<Cache<[u8; 32], Option<Identity>>>,
    decisions: RefCell<Cache<(Identity, Attributes), Result<(), Refusal>>>,
    reviews: smol::lock::Semaphore,
}

impl<A: Api> Auth<A> {
    pub fn new(api: A, settings: KubeletApi, node: &str) -> Self {
        Auth {
            api,
            settings,
            node: node.to_string(),
            tokens: RefCell::new(Cache::new(1024)),
            decisions: RefCell::new(Cache::new(1024)),
            reviews: smol::lock::Semaphore::new(REVIEWS_AT_ONCE),
        }
    }

    /// Authenticates, then authorizes, a request.
    pub async fn check(
        &self,
        cert: Option<&Identity>,
        bearer: Option<&str>,
        attrs: &Attributes,
    ) -> Result<Identity, Refusal> {
        let id = match cert {
            Some(id) => id.clone(),
            None => self.token(bearer).await?,
        };
        self.authorize(&id, attrs).await?;
        Ok(id)
    }

    async fn token(&self, bearer: Option<&str>) -> Result<Identity, Refusal> {
        let unauthorized = || Refusal {
            status: 401,
            message: "Unauthorized".into(),
        };
        let token = bearer
            .filter(|_| self.settings.webhook_authn)
            .ok_or_else(unauthorized)?;
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.tokens.borrow().get(&key, Instant::now()) {
            return hit.ok_or_else(unauthorized);
        }
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}});
        let r = self
            .review("/apis/authentication.k8s.io/v1/tokenreviews", body)
            .await
            .map_err(|e| {
                log::warn!("kubelet API: TokenReview failed: {e}");
                unauthorized()
            })?;
        let st = &r["status"];
        let id = (st["authenticated"] == true)
            .then(|| Identity {
                user: st["user"]["username"].as_str().unwrap_or("").to_string(),
                uid: st["user"]["uid"].as_str().unwrap_or("").to_string(),
                groups: st["user"]["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(String::from))
                    .collect(),
            })
            .filter(|id| !id.user.is_empty());
        let ttl = match id {
            Some(_) => self.settings.authn_cache_ttl,
            None => Duration::from_secs(10),
        };
        self.tokens
            .borrow_mut()
            .put(key, id.clone(), ttl, Instant::now());
        id.ok_or_else(unauthorized)
    }

    async fn authorize(&self, id: &Identity, attrs: &Attributes) -> Result<(), Refusal> {
        if self.settings.authz_mode == AuthzMode::AlwaysAllow {
            return Ok(());
        }
        let key = (id.clone(), attrs.clone());
        if let Some(hit) = self.decisions.borrow().get(&key, Instant::now()) {
            return hit;
        }
        let what = format!(
            "user={}, verb={}, resource=nodes, subresource={}",
            id.user, attrs.verb, attrs.subresource
        );
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": id.user, "uid": id.uid, "groups": id.groups,
                "resourceAttributes": {"verb": attrs.verb, "resource": "nodes",
                    "subresource": attrs.subresource, "name": self.node, "version": "v1", "group": ""}}});
        let r = match self
            .review("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                log::warn!("kubelet API: SubjectAccessReview for {what} failed: {e}");
                return Err(Refusal {
                    status: 500,
                    message: format!("Authorization error ({what})"),
                });
            }
        };
        let (decision, ttl) = if r["status"]["allowed"] == true {
            (Ok(()), self.settings.authz_cache_authorized)
        } else {
            let reason = r["status"]["reason"].as_str().unwrap_or("");
            log::debug!("kubelet API: forbidden ({what}): {reason}");
            let refusal = Refusal {
                status: 403,
                message: format!("Forbidden ({what})"),
            };
            (Err(refusal), self.settings.authz_cache_unauthorized)
        };
        self.decisions
            .borrow_mut()
            .put(key, decision.clone(), ttl, Instant::now());
        decision
    }

    /// POSTs a review on a thread of its own; the answer's body, or why there is none.
    async fn review(
        &self,
        path: &'static str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let _slot = self.reviews.acquire().await;
        let api = self.api.clone();
        let r = crate::sys::blocking::run_long(move || api.call(Method::Post, path, Some(&body)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if r.ok() {
            Ok(r.body)
        } else {
            Err(r.message())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_subresources_as_the_kubelet_maps_them() {
        let get = hyper::Method::GET;
        let sub = |p: &str| attributes(&get, p).subresource;
        assert_eq!(sub("/containerLogs/default/web/main"), "proxy");
        assert_eq!(sub("/healthz"), "proxy");
        assert_eq!(sub("/logs/"), "log");
        assert_eq!(sub("/logsx"), "proxy");
        assert_eq!(sub("/stats/summary"), "stats");
        assert_eq!(sub("/metrics"), "metrics");
        assert_eq!(
            attributes(&hyper::Method::POST, "/exec/a/b/c").verb,
            "create"
        );
        assert_eq!(attributes(&get, "/healthz").verb, "get");
    }

    #[test]
    fn the_cache_expires_and_stays_bounded() {
        let mut c: Cache<u32, bool> = Cache::new(3);
        let t = Instant::now();
        c.put(1, true, Duration::from_secs(10), t);
        assert_eq!(c.get(&1, t + Duration::from_secs(5)), Some(true));
        assert_eq!(c.get(&1, t + Duration::from_secs(11)), None);
        for i in 0..10 {
            c.put(i, false, Duration::from_secs(10), t);
        }
        assert!(c.entries.len() <= 3);
        c.put(99, true, Duration::ZERO, t);
        assert_eq!(c.get(&99, t), None);
    }
}
