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

/// Runs `f` on a probe worker that has joined the pod's network namespace (when it has
/// one), so probes reach the pod's loopback exactly as its containers do.
async fn in_netns(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> (bool, String) + Send + 'static,
) -> (bool, String) {
    match crate::sys::blocking::run_in_netns(netns, f).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => (false, e),
        Err(e) => (false, format!("cannot run the probe: {e}")),
    }
}
