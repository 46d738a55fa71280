//! The status endpoint (`--status-address`): `/healthz`, `/pods` (a v1 PodList), `/manifests`
//! (manifest problems), `/metrics` (Prometheus text) and the kubelet's
//! `/containerLogs/<namespace>/<pod>/<container>` (see [`super::routes`]).
//!
//! Every hostNetwork pod can reach it, so it is built to stay up under hostile clients: one
//! thread runs every connection (hyper's HTTP/1 server on smol), with request heads bounded
//! by [`MAX_HEAD`] (431 beyond), heads that must arrive within [`HEAD_TIMEOUT`] (an idle
//! keep-alive connection is closed after it too), bodies never read, writes that must
//! progress (see [`super::io`]), and at most [`MAX_CONNECTIONS`] connections: past that the
//! oldest idle one is closed to make room (as nginx reuses keep-alive connections), or the
//! new one is closed when all are busy. Log followers are limited separately, so they never
//! take every connection. The accept loop and its bounds are shared with the kubelet API
//! ([`serve_with`]), which puts TLS and authentication in front of the same answers.

use super::io::{Conn, Peer};
use super::routes::{self, Busy, Ctx};
use super::watch::DirWatcher;
use super::StatusBoard;
use hyper::server::conn::http1;
use smol::{Async, LocalExecutor};
use smol_hyper::rt::{FuturesIo, SmolTimer};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head (request line and headers) read; also hyper's buffer bound.
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send a request head, or stay idle between requests.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the status endpoint's thread: {0}")]
    Thread(std::io::Error),
}

/// Binds `addr` (so a taken port is reported at start) and serves it on its own thread.
pub fn start(
    addr: SocketAddr,
    board: Arc<StatusBoard>,
    events: Arc<crate::events::Recorder>,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || serve(listener, board, events))
        .map_err(ServerError::Thread)?;
    Ok(())
}

/// One open connection: whether it is answering, and how to close it.
struct Slot {
    busy: Rc<Cell<u32>>,
    /// Dropping it ends the connection's task.
    _stop: smol::channel::Sender<()>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    /// By id, so the first idle one found is the oldest.
    open: BTreeMap<u64, Slot>,
}

impl Registry {
    /// Makes room for a new connection: None when every connection is busy.
    fn admit(&mut self) -> Option<(u64, Rc<Cell<u32>>, smol::channel::Receiver<()>)> {
        if self.open.len() >= MAX_CONNECTIONS {
            let idle = self
                .open
                .iter()
                .find(|(_, s)| s.busy.get() == 0)
                .map(|(id, _)| *id)?;
            self.open.remove(&idle);
        }
        let (tx, rx) = smol::channel::bounded(1);
        let busy = Rc::new(Cell::new(0));
        let id = self.next;
        self.next += 1;
        self.open.insert(
            id,
            Slot {
                busy: busy.clone(),
                _stop: tx,
            },
        );
        Some((id, busy, rx))
    }
}

/// Takes a connection out of the registry when its task ends, however it ends.
struct Deregister(Rc<RefCell<Registry>>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        self.0.borrow_mut().open.remove(&self.1);
    }
}

/// Serves one kind of connection; the accept loop ([`serve_with`]) owns the bounds.
pub(crate) trait Handler {
    /// Serves one connection until it closes; `busy` counts its answers in progress.
    fn connection(
        &self,
        stream: Async<TcpStream>,
        busy: Rc<Cell<u32>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
}

/// The status endpoint's connections: plain HTTP, every route of [`routes::respond`].
struct Plain {
    http: http1::Builder,
    ctx: Rc<Ctx>,
}

impl Handler for Plain {
    fn connection(
        &self,
        stream: Async<TcpStream>,
        busy: Rc<Cell<u32>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(connection(stream, &self.http, self.ctx.clone(), busy))
    }
}

/// hyper's HTTP/1 settings for every server here: bounded heads, a head timeout.
pub(crate) fn http_builder() -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(SmolTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD);
    http
}

/// The context of the routes, with a log-directory watcher running on `ex`.
pub(crate) fn context(
    ex: &LocalExecutor<'_>,
    board: Arc<StatusBoard>,
    events: Option<Arc<crate::events::Recorder>>,
) -> Rc<Ctx> {
    let (watcher, watching) = DirWatcher::new();
    ex.spawn(watching).detach();
    Rc::new(Ctx {
        board,
        events,
        watcher,
        followers: Rc::new(Cell::new(0)),
    })
}

fn serve(listener: TcpListener, board: Arc<StatusBoard>, events: Arc<crate::events::Recorder>) {
    serve_with(listener, "status endpoint", |ex| Plain {
        http: http_builder(),
        ctx: context(ex, board, Some(events)),
    });
}

/// Runs the accept loop on this thread: at most [`MAX_CONNECTIONS`] connections (the oldest
/// idle one closed to make room), each served by the handler `make` builds on the executor.
pub(crate) fn serve_with<H: Handler>(
    listener: TcpListener,
    what: &'static str,
    make: impl FnOnce(&LocalExecutor<'_>) -> H,
) {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = match Async::new(listener) {
            Ok(l) => l,
            Err(e) => {
                log::error!("{what}: {e}; it is off");
                return;
            }
        };
        let handler = make(&ex);
        let registry = Rc::new(RefCell::new(Registry::default()));
        let mut failing = false;
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, most likely: say it once, wait, don't spin.
                    if !failing {
                        log::warn!("{what}: accept: {e}");
                    }
                    failing = true;
                    smol::Timer::after(Duration::from_millis(200)).await;
                    continue;
                }
            };
            failing = false;
            let Some((id, busy, stop)) = registry.borrow_mut().admit() else {
                log::debug!("{what}: {MAX_CONNECTIONS} connections busy; closing a new one");
                continue;
            };
            let guard = Deregister(registry.clone(), id);
            let conn = handler.connection(stream, busy);
            ex.spawn(async move {
                let _guard = guard;
                smol::future::or(conn, async {
                    let _ = stop.recv().await;
                })
                .await;
            })
            .detach();
            // Let the new connection read its request before more are accepted, so a flood
            // of connections closes idle ones, not this one.
            smol::future::yield_now().await;
        }
    }));
}

/// Serves one connection until it closes.
fn connection(
    stream: Async<TcpStream>,
    http: &http1::Builder,
    ctx: Rc<Ctx>,
    busy: Rc<Cell<u32>>,
) -> impl std::future::Future<Output = ()> {
    let stream = Rc::new(stream);
    let io = FuturesIo::new(Conn::new(stream.clone()));
    let service = hyper::service::service_fn(move |req| {
        let reply = routes::respond(&req, &ctx, Peer::new(stream.clone()), Busy::new(&busy));
        async move { Ok::<_, std::convert::Infallible>(reply) }
    });
    let conn = http.serve_connection(io, service);
    async move {
        if let Err(e) = conn.await {
            log::debug!("status endpoint: connection: {e}");
        }
    }
}
