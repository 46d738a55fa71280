//! The kubelet API's connections: a TLS handshake (bounded in time), then HTTP/1 as on the
//! status endpoint, each request authenticated and authorized ([`super::auth`]) before it
//! reaches the status endpoint's answers, of which only `/healthz` and
//! `/containerLogs/<namespace>/<pod>/<container>` are served here. The accept loop, its
//! connection limits and the write-stall bound are the status endpoint's own.

use super::auth::{self, Auth};
use super::tls;
use crate::mirror::api::Api;
use crate::status::io::{Conn, Peer};
use crate::status::routes::{self, Busy, Ctx};
use crate::status::server::{Handler, HEAD_TIMEOUT};
use hyper::server::conn::http1;
use smol::Async;
use smol_hyper::rt::FuturesIo;
use std::cell::Cell;
use std::future::Future;
use std::net::TcpStream;
use std::pin::Pin;
use std::rc::Rc;

pub struct Secure<A: Api> {
    pub http: http1::Builder,
    pub ctx: Rc<Ctx>,
    pub tls: futures_rustls::TlsAcceptor,
    pub auth: Rc<Auth<A>>,
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
fn bearer<B>(req: &hyper::Request<B>) -> Option<String> {
    let value = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// The paths the kubelet API serves; everything else of the kubelet's is not offered.
fn served(path: &str) -> bool {
    path == "/healthz" || path.starts_with("/containerLogs/")
}

impl<A: Api> Handler for Secure<A> {
    fn connection(
        &self,
        stream: Async<TcpStream>,
        busy: Rc<Cell<u32>>,
    ) -> Pin<Box<dyn Future<Output = ()>>> {
        let http = self.http.clone();
        let ctx = self.ctx.clone();
        let auth = self.auth.clone();
        let handshake = self.tls.accept(Conn::new(Rc::new(stream)));
        Box::pin(async move {
            let done = smol::future::or(async { Some(handshake.await) }, async {
                smol::Timer::after(HEAD_TIMEOUT).await;
                None
            });
            let tls_stream = match done.await {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    log::debug!("kubelet API: TLS handshake: {e}");
                    return;
                }
                None => {
                    log::debug!("kubelet API: no TLS handshake within {HEAD_TIMEOUT:?}");
                    return;
                }
            };
            let (conn, session) = tls_stream.get_ref();
            let cert_id = Rc::new(
                session
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::identity),
            );
            let raw = conn.stream();
            let service = hyper::service::service_fn(move |req| {
                let mark = Busy::new(&busy);
                let (ctx, auth, cert_id) = (ctx.clone(), auth.clone(), cert_id.clone());
                let peer = Peer::new(raw.clone());
                async move {
                    let attrs = auth::attributes(req.method(), req.uri().path());
                    let token = bearer(&req);
                    let reply = match auth
                        .check((*cert_id).as_ref(), token.as_deref(), &attrs)
                        .await
                    {
                        Err(r) => routes::refusal(r.status, &r.message, mark),
                        Ok(_) if served(req.uri().path()) => {
                            routes::respond(&req, &ctx, peer, mark)
                        }
                        Ok(_) => routes::refusal(404, "404 page not found", mark),
                    };
                    Ok::<_, std::convert::Infallible>(reply)
                }
            });
            if let Err(e) = http
                .serve_connection(FuturesIo::new(tls_stream), service)
                .await
            {
                log::debug!("kubelet API: connection: {e}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_paths() {
        let req = |h: &str| {
            hyper::Request::builder()
                .header("Authorization", h)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc".into()));
        assert_eq!(bearer(&req("bearer  abc ")), Some("abc".into()));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
        assert!(served("/containerLogs/default/web-node1/main"));
        assert!(served("/healthz"));
        assert!(!served("/pods"));
        assert!(!served("/exec/default/web/main"));
    }
}
