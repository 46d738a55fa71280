//! Pulls over an edge uplink, against a real HTTP server on loopback that serves an OCI
//! layout and misbehaves on the layer blob as slow and flaky links do: a body that trickles
//! for several idle timeouts, one that stalls, one that never ends, one cut in the middle
//! (resumed with a Range request at the next try), and a registry that ignores Range.
//! The idle timeout is made short for the test; the default is 60 s.

use crate::common;

use common::*;
use serde_json::Value;
use staticlet::image::pull::{pull, PullOptions};
use staticlet::image::{ImageError, ImageStore, Reference};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// The whole blob in small pieces, each well within the idle timeout.
    Trickle,
    /// Half the blob, then nothing for much longer than the idle timeout.
    Stall,
    /// The blob, then bytes without end (no Content-Length).
    Endless,
    /// Garbage without end.
    Garbage,
    /// Half the blob, then the connection breaks; a Range request gets the rest.
    Cut,
    /// Cut as above, and later requests get the whole blob again (Range ignored).
    CutIgnoringRange,
}

struct Piecewise {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    delay: Duration,
    /// Where the stream stalls (then fails), if it does.
    stop_at: Option<(usize, Duration)>,
    /// Bytes to send after `data` (0 = none, usize::MAX = forever).
    tail: usize,
}

impl Read for Piecewise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One pause per chunk, whatever the size of the server's reads.
        if self.pos % self.chunk.max(1) == 0 {
            std::thread::sleep(self.delay);
        }
        if let Some((at, pause)) = self.stop_at {
            if self.pos >= at {
                std::thread::sleep(pause);
                return Err(io::Error::other("connection broken by the test"));
            }
        }
        let to_boundary = self.chunk - self.pos % self.chunk.max(1);
        let end = self.data.len().min(self.pos + to_boundary.min(buf.len()));
        let end = match self.stop_at {
            Some((at, _)) => end.min(at),
            None => end,
        };
        if self.pos < end {
            let n = end - self.pos;
            buf[..n].copy_from_slice(&self.data[self.pos..end]);
            self.pos = end;
            return Ok(n);
        }
        if self.tail == 0 {
            return Ok(0);
        }
        let n = buf.len().min(self.tail).min(self.chunk);
        buf[..n].fill(b'x');
        self.tail = self.tail.saturating_sub(n);
        Ok(n)
    }
}

struct Fake {
    port: u16,
    layer: String,
    layer_len: usize,
    /// The Range header of every request for the layer (None when absent).
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn serve(layout: PathBuf, behaviour: Behaviour) -> Fake {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob_path(&layout, &manifest_digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let layer_len = fs::read(blob_path(&layout, &layer)).unwrap().len();
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let (seen, layer_digest) = (ranges.clone(), layer.clone());
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let (layout, seen, layer) = (layout.clone(), seen.clone(), layer_digest.clone());
            let manifest_digest = manifest_digest.clone();
            std::thread::spawn(move || {
                let url = req.url().to_string();
                let range = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Range"))
                    .map(|h| h.value.to_string());
                let digest = if url.ends_with("/manifests/1") {
                    manifest_digest
                } else {
                    url.rsplit('/').next().unwrap_or("").to_string()
                };
                let Ok(data) = fs::read(blob_path(&layout, &digest)) else {
                    let _ = req.respond(tiny_http::Response::empty(404));
                    return;
                };
                if digest != layer {
                    let _ = req.respond(tiny_http::Response::from_data(data));
                    return;
                }
                let earlier = {
                    let mut s = seen.lock().unwrap();
                    s.push(range.clone());
                    s.len() - 1
                };
                let half = data.len() / 2;
                let len = data.len();
                let piece = |data: Vec<u8>, chunk, delay, stop_at, tail| Piecewise {
                    data,
                    pos: 0,
                    chunk,
                    delay,
                    stop_at,
                    tail,
                };
                let (status, reader, length, content_range) = match behaviour {
                    Behaviour::Trickle => {
                        let chunk = len / 40 + 1;
                        (
                            200,
                            piece(data, chunk, Duration::from_millis(100), None, 0),
                            Some(len),
                            None,
                        )
                    }
                    Behaviour::Stall => (
                        200,
                        piece(
                            data,
                            64 << 10,
                            Duration::ZERO,
                            Some((half, Duration::from_secs(8))),
                            0,
                        ),
                        Some(len),
                        None,
                    ),
                    Behaviour::Endless => (
                        200,
                        piece(data, 64 << 10, Duration::ZERO, None, usize::MAX),
                        None,
                        None,
                    ),
                    Behaviour::Garbage => (
                        200,
                        piece(Vec::new(), 64 << 10, Duration::ZERO, None, usize::MAX),
                        None,
                        None,
                    ),
                    Behaviour::Cut | Behaviour::CutIgnoringRange if earlier == 0 => (
                        200,
                        piece(
                            data,
                            64 << 10,
                            Duration::ZERO,
                            Some((half, Duration::ZERO)),
                            0,
                        ),
                        Some(len),
                        None,
                    ),
                    Behaviour::Cut => {
                        let from: usize = range
                            .as_deref()
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.strip_suffix('-'))
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        let rest = data[from.min(len)..].to_vec();
                        let n = rest.len();
                        (
                            206,
                            piece(rest, 64 << 10, Duration::ZERO, None, 0),
                            Some(n),
                            Some(format!("bytes {from}-{}/{len}", len - 1)),
                        )
                    }
                    Behaviour::CutIgnoringRange => (
                        200,
                        piece(data, 64 << 10, Duration::ZERO, None, 0),
                        Some(len),
                        None,
                    ),
                };
                let mut headers = Vec::new();
                if let Some(cr) = content_range {
                    headers.push(
                        tiny_http::Header::from_bytes(&b"Content-Range"[..], cr.as_bytes())
                            .unwrap(),
                    );
                }
                let _ = req.respond(tiny_http::Response::new(
                    tiny_http::StatusCode(status),
                    headers,
                    reader,
                    length,
                    None,
                ));
            });
        }
    });
    Fake {
        port,
        layer,
        layer_len,
        ranges,
    }
}

fn try_pull(f: &Fake, root: &Path) -> Result<String, ImageError> {
    let store = ImageStore::open(root).unwrap();
    let options = PullOptions {
        insecure: vec![format!("127.0.0.1:{}", f.port)],
        idle_timeout: IDLE,
        ..Default::default()
    };
    let reference = Reference::parse(&format!("127.0.0.1:{}/ops/app:1", f.port)).unwrap();
    pull(&store, &reference, &options, "now")
}

/// Every file the store holds under `dir`, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    out
}

#[test]
fn a_body_lasting_several_idle_timeouts_succeeds() {
    let base = unique_dir("uplink-trickle");
    let f = serve(busybox_layout(&base), Behaviour::Trickle);
    let started = Instant::now();
    let digest = try_pull(&f, &base.join("root"));
    let took = started.elapsed();
    assert!(digest.is_ok(), "{digest:?}");
    assert!(
        took > IDLE * 3,
        "the body lasted several idle timeouts: {took:?}"
    );
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_stalled_body_fails_after_the_idle_timeout_and_the_next_try_resumes() {
    let base = unique_dir("uplink-stall");
    let f = serve(busybox_layout(&base), Behaviour::Stall);
    let started = Instant::now();
    let err = try_pull(&f, &base.join("root")).unwrap_err().to_string();
    let took = started.elapsed();
    assert!(
        took < IDLE * 6,
        "failed after the idle timeout, not the stall: {took:?}"
    );
    assert!(
        err.contains("interrupted") && err.contains("resumes"),
        "{err}"
    );
    let partial = base
        .join("root/images/tmp")
        .join(format!("partial-{}", f.layer.trim_start_matches("sha256:")));
    let kept = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    assert!(kept > 0, "what arrived is kept for the next try");
    assert!(!base.join("root/images/refs.json").exists() || !err.is_empty());
    let _ = fs::remove_dir_all(base);
}

#[test]
fn an_endless_body_is_cut_at_the_declared_size() {
    let base = unique_dir("uplink-endless");
    let f = serve(busybox_layout(&base), Behaviour::Endless);
    let root = base.join("root");
    try_pull(&f, &root).expect("the blob's declared bytes are all that is read");
    let garbage = unique_dir("uplink-garbage");
    let g = serve(busybox_layout(&garbage), Behaviour::Garbage);
    let groot = garbage.join("root");
    let err = try_pull(&g, &groot).unwrap_err();
    assert!(matches!(err, ImageError::Corrupt { .. }), "{err}");
    for (path, len) in files(&groot) {
        assert!(
            len <= g.layer_len as u64,
            "{} holds {len} bytes",
            path.display()
        );
    }
    let _ = fs::remove_dir_all(base);
    let _ = fs::remove_dir_all(garbage);
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let base = unique_dir("uplink-cut");
    let f = serve(busybox_layout(&base), Behaviour::Cut);
    let root = base.join("root");
    let err = try_pull(&f, &root).unwrap_err().to_string();
    assert!(err.contains("resumes"), "{err}");
    try_pull(&f, &root).expect("the second try completes the blob");
    let ranges = f.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let from: usize = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the retry asks for the rest: {ranges:?}"));
    assert!(from > 0 && from < f.layer_len, "{from} of {}", f.layer_len);
    let store = ImageStore::open(&root).unwrap();
    let reference = Reference::parse(&format!("127.0.0.1:{}/ops/app:1", f.port)).unwrap();
    let image = store.resolve(&reference).unwrap().expect("pulled");
    assert!(store.rootfs(&image).unwrap().join("bin/busybox").is_file());
    let _ = fs::remove_dir_all(base);
}

#[test]
fn a_registry_that_ignores_range_gets_a_full_download() {
    let base = unique_dir("uplink-norange");
    let f = serve(busybox_layout(&base), Behaviour::CutIgnoringRange);
    let root = base.join("root");
    assert!(try_pull(&f, &root).is_err());
    try_pull(&f, &root).expect("a 200 answer to a Range request starts over");
    let ranges = f.ranges.lock().unwrap().clone();
    assert!(ranges[1].is_some(), "a range was asked: {ranges:?}");
    let _ = fs::remove_dir_all(base);
}
