//! Probes and lifecycle hooks: exec through crun, httpGet and tcpSocket from a thread inside
//! the pod's network namespace.

use super::{Context, Event};
use crate::manifest::pod::{Container, Handler, IntOrString};
use crate::manifest::StaticPod;
use crate::reconcile::{ProbeKind, Running};
use crate::runtime::podsetup::Sandbox;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
/// Runs a handler (probe or preStop) once; returns success and a message.
pub(super) async fn run_handler(
    ctx: &Context,
    pod: &StaticPod,
    sb: &Sandbox,
    c: &Container,
    running: &Running,
    h: &Handler,
    timeout: Duration,
) -> (bool, String) {
    if let Some(exec) = &h.exec {
        return match ctx.crun.exec(&running.id, &exec.command, timeout).await {
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
    let netns = sb.namespaces.net.clone();
    if let Some(get) = &h.http_get {
        let Some(port) = port_of(&get.port) else {
            return (false, "no such port".into());
        };
        let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let host = get.host.clone().unwrap_or_else(|| sb.probe_host());
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
            crate::probe::http_get(&url, &headers, timeout)
        })
        .await;
    }
    if let Some(tcp) = &h.tcp_socket {
        let Some(port) = port_of(&tcp.port) else {
            return (false, "no such port".into());
        };
        let host = tcp.host.clone().unwrap_or_else(|| sb.probe_host());
        return in_netns(netns, move || crate::probe::tcp(&host, port, timeout)).await;
    }
    let _ = pod;
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

pub async fn probe(
    ctx: Arc<Context>,
    pod: Arc<StaticPod>,
    sb: Sandbox,
    index: usize,
    kind: ProbeKind,
    running: Running,
) {
    let _spec = &pod.pod.spec;
    let c = pod.container(index);
    let Some(p) = crate::reconcile::probe_of(c, kind) else {
        return;
    };
    let timeout = Duration::from_secs(p.timeout().max(1) as u64);
    let (success, message) = run_handler(&ctx, &pod, &sb, c, &running, &p.handler, timeout).await;
    let _ = ctx
        .events
        .send(Event::Probe {
            uid: pod.uid().to_string(),
            index,
            kind,
            success,
            message,
        })
        .await;
}
