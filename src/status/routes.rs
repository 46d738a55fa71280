//! The endpoint's answers, one per path: `/healthz`, `/pods`, `/manifests`, `/metrics`,
//! `/events` and the kubelet's `/containerLogs/<namespace>/<pod>/<container>`. Only GET and HEAD without
//! a body are served: anything else is refused before a byte of its body is read.

use super::follow::{Follow, FollowerSlot, LogStream};
use super::io::Peer;
use super::logs::{self, Refusal};
use super::watch::DirWatcher;
use super::StatusBoard;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Log followers at once; the rest of the connections stay for everyone else.
pub const MAX_FOLLOWERS: usize = 48;

/// What every request of the server shares.
pub struct Ctx {
    pub board: Arc<StatusBoard>,
    /// The agent's events, for `/events` (`describe`); None where that path is not served.
    pub events: Option<Arc<crate::events::Recorder>>,
    pub watcher: Rc<DirWatcher>,
    pub followers: Rc<Cell<usize>>,
}

/// Marks its connection busy while an answer is being sent (a busy connection is never
/// closed to make room for a new one).
pub struct Busy(Rc<Cell<u32>>);

impl Busy {
    pub fn new(count: &Rc<Cell<u32>>) -> Busy {
        count.set(count.get() + 1);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

enum Content {
    Full(Option<Bytes>),
    Log(Box<LogStream>),
}

/// An answer's body: a fixed text, or a log streamed from its file.
pub struct Reply {
    content: Content,
    _busy: Busy,
}

impl Body for Reply {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match &mut self.get_mut().content {
            Content::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Content::Log(s) => Pin::new(s.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Full(b) => b.is_none(),
            Content::Log(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Content::Log(_) => SizeHint::default(),
        }
    }
}

fn text(status: u16, kind: &'static str, body: impl Into<Bytes>, busy: Busy) -> Response<Reply> {
    let mut r = Response::new(Reply {
        content: Content::Full(Some(body.into())),
        _busy: busy,
    });
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// A refused request: `status` and a one-line text (the kubelet API's 401, 403, 404).
pub fn refusal(status: u16, message: &str, busy: Busy) -> Response<Reply> {
    text(status, PLAIN, format!("{message}\n"), busy)
}

fn json(v: &serde_json::Value, busy: Busy) -> Response<Reply> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    text(200, "application/json", body, busy)
}

/// Answers one request.
pub fn respond<B: Body>(req: &Request<B>, ctx: &Ctx, peer: Peer, busy: Busy) -> Response<Reply> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(405, PLAIN, "only GET is served here\n", busy);
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    if !req.body().is_end_stream() {
        // Closing is cheaper than draining whatever the client claims to send.
        let mut r = text(413, PLAIN, "requests here carry no body\n", busy);
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let path = req.uri().path();
    match path {
        "/healthz" => text(200, PLAIN, "ok", busy),
        "/pods" => json(&super::pod_list(ctx.board.pods_with_mirrors()), busy),
        "/manifests" => json(&super::problems_json(&ctx.board.read()), busy),
        "/events" if ctx.events.is_some() => match &ctx.events {
            Some(e) => json(&events_json(e), busy),
            None => text(404, PLAIN, "not found\n", busy),
        },
        "/metrics" => text(
            200,
            "text/plain; version=0.0.4",
            super::metrics(&ctx.board.read()),
            busy,
        ),
        p => match p.strip_prefix("/containerLogs/") {
            Some(rest) => match container_logs(rest, req.uri().query().unwrap_or(""), ctx, peer) {
                Ok(stream) => {
                    let mut r = Response::new(Reply {
                        content: Content::Log(Box::new(stream)),
                        _busy: busy,
                    });
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static(PLAIN));
                    r
                }
                Err(e) => text(e.status, PLAIN, format!("{}\n", e.message), busy),
            },
            None => text(404, PLAIN, "not found\n", busy),
        },
    }
}

fn container_logs(rest: &str, query: &str, ctx: &Ctx, peer: Peer) -> Result<LogStream, Refusal> {
    let not_found = || Refusal {
        status: 404,
        message: "not found: use /containerLogs/<namespace>/<pod>/<container>".into(),
    };
    let mut parts = rest.split('/');
    let (Some(ns), Some(pod), Some(container), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not_found());
    };
    let q = logs::parse_query(query, std::time::SystemTime::now())?;
    let target = ctx
        .board
        .inspect(|s| logs::find(s, ns, pod, container, &q))?;
    let follow = match target.follow {
        Some(paths) => {
            if ctx.followers.get() >= MAX_FOLLOWERS {
                return Err(Refusal {
                    status: 503,
                    message: format!(
                        "{MAX_FOLLOWERS} log followers are connected already; try again later"
                    ),
                });
            }
            Some(Follow {
                board: ctx.board.clone(),
                paths,
                watcher: ctx.watcher.clone(),
                peer,
                slot: FollowerSlot::take(&ctx.followers),
            })
        }
        None => None,
    };
    LogStream::open(target.file.clone(), &q, follow).map_err(|e| Refusal {
        status: 500,
        message: format!("reading {}: {e}", target.file.display()),
    })
}

/// The agent's events as a `v1` EventList (oldest first; `involvedObject.uid` is the static
/// pod's), and how many were dropped unposted, for `describe`.
fn events_json(events: &crate::events::Recorder) -> serde_json::Value {
    let saved = events.snapshot();
    let node = events.lock().node().to_string();
    let items: Vec<serde_json::Value> = saved
        .entries
        .iter()
        .map(|e| crate::events::wire::event_object(e, &node, &e.subject.uid))
        .collect();
    serde_json::json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"dropped": saved.dropped}, "items": items})
}
