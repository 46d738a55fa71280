//! The body of a `/containerLogs` answer: a CRI log file turned back into the container's
//! output, sent chunk by chunk as hyper asks for it (a big log never sits in memory). When
//! following, each record goes out as soon as it is written (kubectl's `logs -f`): the stream
//! sleeps until inotify reports a change in the log directory, the agent publishes (the
//! container stopped), or the client goes; it follows the file across rotation and ends when
//! the container stops or the client leaves, releasing the file and the connection.

use super::io::Peer;
use super::logs::{Convert, LogQuery};
use super::watch::{DirWatch, DirWatcher};
use super::{LogPaths, StatusBoard};
use bytes::Bytes;
use event_listener::EventListener;
use http_body::Frame;
use std::cell::Cell;
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Bytes read from the log per step: one frame at most about this size.
const CHUNK: usize = 16 * 1024;
/// A record longer than this without a newline is passed on as it is (the log writer never
/// writes one; a damaged file must not grow the agent).
const MAX_RECORD: usize = 64 * 1024;
/// Without inotify a follower looks again this often.
const FALLBACK_RECHECK: Duration = Duration::from_secs(1);

/// Counts live followers; the server refuses new ones past its limit.
pub struct FollowerSlot(Rc<Cell<usize>>);

impl FollowerSlot {
    pub fn take(count: &Rc<Cell<usize>>) -> FollowerSlot {
        count.set(count.get() + 1);
        FollowerSlot(count.clone())
    }
}

impl Drop for FollowerSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What a follower needs beyond the file.
pub struct Follow {
    pub board: Arc<StatusBoard>,
    pub paths: LogPaths,
    pub watcher: Rc<DirWatcher>,
    pub peer: Peer,
    pub slot: FollowerSlot,
}

struct Following {
    board: Arc<StatusBoard>,
    paths: LogPaths,
    dir: Option<DirWatch>,
    peer: Peer,
    _slot: FollowerSlot,
    /// Wake-ups taken before the last read, so no write between the read and the wait is lost.
    armed: Option<Armed>,
    /// The file was replaced (rotation): the old one is being read to its end.
    draining_rotated: bool,
    /// The container stopped: what is left is read, then the stream ends.
    last_drain: bool,
}

struct Armed {
    board: EventListener,
    dir: Option<EventListener>,
    recheck: Option<smol::Timer>,
}

pub struct LogStream {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
    buf: Vec<u8>,
    convert: Convert,
    follow: Option<Following>,
    done: bool,
}

impl LogStream {
    /// Opens the log (positioned for `tailLines`); a file not yet created reads as empty.
    pub fn open(path: PathBuf, q: &LogQuery, follow: Option<Follow>) -> io::Result<LogStream> {
        let mut file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let (Some(f), Some(n)) = (file.as_mut(), q.tail_lines) {
            let start = super::logs::tail_start(f, n)?;
            f.seek(SeekFrom::Start(start))?;
        }
        let follow = follow.map(|f| Following {
            dir: path.parent().and_then(|d| f.watcher.watch(d)),
            board: f.board,
            paths: f.paths,
            peer: f.peer,
            _slot: f.slot,
            armed: None,
            draining_rotated: false,
            last_drain: false,
        });
        Ok(LogStream {
            path,
            file,
            pending: Vec::new(),
            buf: vec![0u8; CHUNK],
            convert: Convert::new(q),
            follow,
            done: false,
        })
    }

    /// Reads the next chunk; returns the output it gave (possibly empty) or None at the end
    /// of the file.
    fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let n = match self.file.as_mut() {
            Some(f) => f.read(&mut self.buf)?,
            None => 0,
        };
        if n == 0 {
            return Ok(None);
        }
        self.pending
            .extend_from_slice(self.buf.get(..n).unwrap_or_default());
        let mut out = Vec::new();
        let mut used = 0;
        while let Some(pos) = self.pending[used..].iter().position(|b| *b == b'\n') {
            let record = &self.pending[used..used + pos];
            used += pos + 1;
            self.convert.record(record, &mut out);
            if self.convert.exhausted() {
                self.done = true;
                break;
            }
        }
        self.pending.drain(..used);
        if self.pending.len() > MAX_RECORD {
            let record = std::mem::take(&mut self.pending);
            self.convert.record(&record, &mut out);
        }
        Ok(Some(out))
    }

    /// True when the path now names another file than the one open (rotation, or the file
    /// appeared).
    fn replaced(&self) -> bool {
        let Ok(now) = std::fs::metadata(&self.path) else {
            return false;
        };
        match &self.file {
            Some(f) => f
                .metadata()
                .map(|m| (m.dev(), m.ino()) != (now.dev(), now.ino()))
                .unwrap_or(true),
            None => true,
        }
    }

    /// What to do at the end of the file when following: Some(result) ends this poll.
    fn at_end(&mut self, cx: &mut Context<'_>) -> Option<Poll<Option<io::Result<Frame<Bytes>>>>> {
        let replaced = self.replaced();
        let Some(f) = self.follow.as_mut() else {
            self.done = true;
            return None;
        };
        if f.last_drain {
            self.done = true;
            return None;
        }
        if replaced {
            // The writer no longer appends to the old file once it is renamed: read it to
            // its end once more, then go on with the new one from its start.
            if !f.draining_rotated && self.file.is_some() {
                f.draining_rotated = true;
                return None;
            }
            f.draining_rotated = false;
            self.file = File::open(&self.path).ok();
            self.pending.clear();
            return None;
        }
        let Some(armed) = f.armed.as_mut() else {
            f.armed = Some(Armed {
                board: f.board.listen(),
                dir: f.dir.as_ref().map(DirWatch::listen),
                recheck: f
                    .dir
                    .is_none()
                    .then(|| smol::Timer::after(FALLBACK_RECHECK)),
            });
            // Read once more: a write before the listeners were taken is not missed.
            return None;
        };
        let running = f.board.inspect(|s| {
            s.log_paths.iter().any(|l| {
                l.namespace == f.paths.namespace
                    && l.pod == f.paths.pod
                    && l.container == f.paths.container
                    && l.current == self.path
                    && l.running
            })
        });
        if !running {
            f.last_drain = true;
            return None;
        }
        if f.peer.poll_gone(cx).is_ready() {
            self.done = true;
            return Some(Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the log follower went away",
            )))));
        }
        let woken = Pin::new(&mut armed.board).poll(cx).is_ready()
            || armed
                .dir
                .as_mut()
                .is_some_and(|d| Pin::new(d).poll(cx).is_ready())
            || armed
                .recheck
                .as_mut()
                .is_some_and(|t| Pin::new(t).poll(cx).is_ready());
        if woken {
            f.armed = None;
            return None;
        }
        Some(Poll::Pending)
    }
}

impl http_body::Body for LogStream {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.read_chunk() {
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Some(out)) if out.is_empty() => continue,
                Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                Ok(None) => {
                    if let Some(result) = this.at_end(cx) {
                        return result;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
