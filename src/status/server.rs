//! The status endpoint (`--status-address`): `/healthz`, `/pods` (a v1 PodList), `/manifests`
//! (manifest problems), `/metrics` (Prometheus text) and the kubelet's
//! `/containerLogs/<namespace>/<pod>/<container>` (`?follow=true`, `?previous=true`).
//! A small blocking server (tiny_http) on its own thread; it only reads the status board.

use super::{LogPaths, StatusBoard};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Response, Server};

pub fn start(addr: SocketAddr, board: Arc<StatusBoard>) -> io::Result<()> {
    let server = Server::http(addr).map_err(|e| io::Error::other(e.to_string()))?;
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let board = board.clone();
                handle(req, &board);
            }
        })?;
    Ok(())
}

fn header(kind: &str) -> Header {
    Header::from_bytes(&b"Content-Type"[..], kind.as_bytes()).expect("static header is valid")
}

fn handle(req: tiny_http::Request, board: &Arc<StatusBoard>) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let flag = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == format!("{name}=true") || kv == format!("{name}=1"))
    };
    let state = board.pods_with_mirrors();
    let json = |v: serde_json::Value| {
        Response::from_string(serde_json::to_string_pretty(&v).unwrap_or_default())
            .with_header(header("application/json"))
    };
    let result = match path {
        "/healthz" => req.respond(Response::from_string("ok")),
        "/pods" => req.respond(json(super::pod_list(&state))),
        "/manifests" => req.respond(json(super::problems_json(&state))),
        "/metrics" => req.respond(
            Response::from_string(super::metrics(&state))
                .with_header(header("text/plain; version=0.0.4")),
        ),
        p if p.starts_with("/containerLogs/") => {
            let parts: Vec<&str> = p.trim_start_matches("/containerLogs/").split('/').collect();
            let found = match parts.as_slice() {
                [ns, pod, container] => state
                    .log_paths
                    .iter()
                    .find(|l| l.namespace == *ns && l.pod == *pod && l.container == *container)
                    .cloned(),
                _ => None,
            };
            match found {
                None => {
                    req.respond(Response::from_string("no such container\n").with_status_code(404))
                }
                Some(lp) => {
                    let file = if flag("previous") {
                        lp.previous.clone()
                    } else {
                        Some(lp.current.clone())
                    };
                    match file {
                        None => req.respond(
                            Response::from_string("no previous container instance\n")
                                .with_status_code(404),
                        ),
                        Some(f) => {
                            let follow = flag("follow") && !flag("previous") && lp.running;
                            // Following can last long: give it its own thread.
                            let board = board.clone();
                            std::thread::spawn(move || {
                                let reader = LogReader::new(f, follow.then_some((board, lp)));
                                let _ = req.respond(Response::new(
                                    200.into(),
                                    vec![header("text/plain")],
                                    reader,
                                    None,
                                    None,
                                ));
                            });
                            Ok(())
                        }
                    }
                }
            }
        }
        _ => req.respond(Response::from_string("not found\n").with_status_code(404)),
    };
    if let Err(e) = result {
        log::debug!("status endpoint: {e}");
    }
}

/// Reads a CRI log file as plain container output (partial lines joined); when following,
/// waits for more until the container stops running.
struct LogReader {
    path: PathBuf,
    file: Option<std::fs::File>,
    pending: Vec<u8>,
    out: Vec<u8>,
    follow: Option<(Arc<StatusBoard>, LogPaths)>,
}

impl LogReader {
    fn new(path: PathBuf, follow: Option<(Arc<StatusBoard>, LogPaths)>) -> LogReader {
        let file = std::fs::File::open(&path).ok();
        LogReader {
            path,
            file,
            pending: Vec::new(),
            out: Vec::new(),
            follow,
        }
    }

    fn still_running(&self) -> bool {
        let Some((board, lp)) = &self.follow else {
            return false;
        };
        board.read().log_paths.iter().any(|l| {
            l.namespace == lp.namespace
                && l.pod == lp.pod
                && l.container == lp.container
                && l.current == self.path
                && l.running
        })
    }

    /// Converts complete CRI lines in `pending` into output.
    fn convert(&mut self) {
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).to_string();
            if let Some((_, partial, content)) = crate::runtime::logwriter::parse_cri_line(&text) {
                self.out.extend_from_slice(content.as_bytes());
                if !partial {
                    self.out.push(b'\n');
                }
            }
        }
    }
}

impl Read for LogReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.out.is_empty() {
                let n = buf.len().min(self.out.len());
                buf[..n].copy_from_slice(&self.out[..n]);
                self.out.drain(..n);
                return Ok(n);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = match self.file.as_mut() {
                Some(f) => f.read(&mut chunk)?,
                None => 0,
            };
            if n > 0 {
                self.pending.extend_from_slice(&chunk[..n]);
                self.convert();
                continue;
            }
            if !self.still_running() {
                return Ok(0);
            }
            // Following a running container: its monitor appends; check again shortly.
            // (A rotated file is reopened by path.)
            std::thread::sleep(Duration::from_millis(250));
            if let (Some(f), Ok(meta)) = (self.file.as_ref(), std::fs::metadata(&self.path)) {
                use std::os::unix::fs::MetadataExt;
                if f.metadata().map(|m| m.ino() != meta.ino()).unwrap_or(true) {
                    self.file = std::fs::File::open(&self.path).ok();
                }
            } else if self.file.is_none() {
                self.file = std::fs::File::open(&self.path).ok();
            }
        }
    }
}
