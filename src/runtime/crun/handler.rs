//! Probes and lifecycle hooks: exec through crun, httpGet and tcpSocket from a thread inside
//! the pod's network namespace.

use super::Context;
use crate::manifest::pod::IntOrString;
use crate::runtime::{HandlerResult, HandlerSpec};
use std::path::PathBuf;

fn result((success, message): (bool, String)) -> HandlerResult {
    HandlerResult { success, message }
}

/// Runs a handler (probe or hook) once.
pub(super) async fn run_handler(ctx: &Context, spec: &HandlerSpec) -> HandlerResult {
    result(handle(ctx, spec).await)
}

async fn handle(ctx: &Context, spec: &HandlerSpec) -> (bool, String) {
    let (h, c, timeout) = (&spec.handler, spec.pod.container(spec.index), spec.timeout);
    if let Some(exec) = &h.exec {
        return match ctx
            .crun
            .exec(&spec.running.id, &exec.command, timeout)
            .await
        {
            Ok((0, _)) => (true, String::new()),
            Ok((code, out)) => (
                false,
                format!(
                    "command exited with {code}: {}",
                    out.chars().take(200).collect::<String>()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
    }
    let port_of = |p: &IntOrString| -> Option<u16> {
        match p {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::Str(s) => s.parse().ok().or_else(|| {
                c.ports
                    .iter()
                    .find(|cp| cp.name.as_deref() == Some(s))
                    .and_then(|cp| u16::try_from(cp.container_port).ok())
            }),
        }
    };
    let netns = spec.sandbox.namespaces.net.clone();
    if let Some(get) = &h.http_get {
        let Some(port) = port_of(&get.port) else {
            return (false, "no such port".into());
        };
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = get
            .host
            .clone()
            .unwrap_or_else(|| spec.sandbox.probe_host());
        let url = format!(
            "{scheme}://{host}:{port}{}",
            get.path.as_deref().unwrap_or("/")
        );
        let headers: Vec<(String, String)> = get
            .http_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return in_netns(netns, move || {
            crate::runtime::probe::http_get(&url, &headers, timeout)
        })
        .await;
    }
    if let Some(tcp) = &h.tcp_socket {
        let Some(port) = port_of(&tcp.port) else {
            return (false, "no such port".into());
        };
        let host = tcp
            .host
            .clone()
            .unwrap_or_else(|| spec.sandbox.probe_host());
        return in_netns(netns, move || {
            crate::runtime::probe::tcp(&host, port, timeout)
        })
        .await;
    }
    (false, "no handler".into())
}

/// Runs `f` on a fresh thread that has joined the pod's network namespace (when it has one),
/// so probes reach the pod's loopback exactly as its containers do.
async fn in_netns(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> (bool, String) + Send + 'static,
) -> (bool, String) {
    let (tx, rx) = smol::channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name("probe".into())
        .spawn(move || {
            if let Some(ns) = netns {
                match std::fs::File::open(&ns) {
                    // SAFETY: setns on an owned, open namespace file descriptor, for this thread only.
                    Ok(f)
                        if unsafe {
                            libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET)
                        } == 0 => {}
                    Ok(_) => {
                        let _ = tx.send_blocking((
                            false,
                            format!(
                                "setns {}: {}",
                                ns.display(),
                                std::io::Error::last_os_error()
                            ),
                        ));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send_blocking((false, format!("{}: {e}", ns.display())));
                        return;
                    }
                }
            }
            let _ = tx.send_blocking(f());
        });
    if let Err(e) = spawned {
        return (false, format!("cannot start a probe thread: {e}"));
    }
    rx.recv()
        .await
        .unwrap_or((false, "probe thread failed".into()))
}
