//! A connection's socket as the HTTP server sees it, with the bounds hyper leaves to its
//! transport: a write that makes no progress for [`WRITE_STALL`] fails (a client that stops
//! reading cannot hold a connection and its log file forever), and a log follower can ask
//! whether the client has gone while nothing is being written.

use smol::io::{AsyncRead, AsyncWrite};
use smol::{Async, Timer};
use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How long a write may wait for the client to read before the connection is dropped.
pub const WRITE_STALL: Duration = Duration::from_secs(30);

/// The socket of one connection, shared by hyper (reading and writing) and the log
/// follower (which only peeks).
pub struct Conn {
    stream: Rc<Async<TcpStream>>,
    stall: Option<Timer>,
}

impl Conn {
    pub fn new(stream: Rc<Async<TcpStream>>) -> Conn {
        Conn {
            stream,
            stall: None,
        }
    }

    /// The socket, for a [`Peer`] when a layer (TLS) sits between it and hyper.
    pub fn stream(&self) -> Rc<Async<TcpStream>> {
        self.stream.clone()
    }

    /// Bounds a write or flush that is waiting for the client.
    fn progress<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stall = None;
            return r;
        }
        let timer = self.stall.get_or_insert_with(|| Timer::after(WRITE_STALL));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {WRITE_STALL:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut &*this.stream).poll_write(cx, buf);
        this.progress(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut &*this.stream).poll_flush(cx);
        this.progress(cx, r)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.stream).poll_close(cx)
    }
}

/// The client end of a connection, watched by a log follower while it has nothing to send.
/// hyper notices a client that closes mid-response only when nothing else is buffered; after
/// a pipelined request it would not, and a follower of a quiet container would then hold
/// its file until the container next writes.
pub struct Peer {
    stream: Option<Rc<Async<TcpStream>>>,
}

impl Peer {
    pub fn new(stream: Rc<Async<TcpStream>>) -> Peer {
        Peer {
            stream: Some(stream),
        }
    }

    /// Ready once the client has closed its end (or the socket failed). A client that sends
    /// more bytes instead cannot be told apart from a live one without reading them, so the
    /// watch stops there (a write still fails once the client is gone).
    pub fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(stream) = &self.stream else {
            return Poll::Pending;
        };
        // Two rounds at most: a readiness that turns out spurious re-arms the watch.
        for _ in 0..2 {
            match stream.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
            }
            match stream.get_ref().peek(&mut [0u8; 1]) {
                Ok(0) => return Poll::Ready(()),
                Ok(_) => {
                    self.stream = None;
                    return Poll::Pending;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }
}
