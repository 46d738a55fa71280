//! Network probes (httpGet, tcpSocket). Blocking, with a timeout; run on a thread that has
//! joined the pod's network namespace (see the crun runtime's handlers).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// An HTTP GET; 200 to 399 is success, as in the kubelet.
pub fn http_get(url: &str, headers: &[(String, String)], timeout: Duration) -> (bool, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .input_buffer_size(8 * 1024)
        .output_buffer_size(8 * 1024)
        .max_idle_connections(0)
        .build()
        .into();
    let mut req = agent.get(url).header(
        "User-Agent",
        concat!("staticlet-probe/", env!("CARGO_PKG_VERSION")),
    );
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    match req.call() {
        Ok(resp) => {
            let code = resp.status().as_u16();
            (
                (200..400).contains(&code),
                format!("HTTP probe to {url} answered {code}"),
            )
        }
        Err(e) => (false, format!("HTTP probe to {url} failed: {e}")),
    }
}

/// A TCP connect.
pub fn tcp(host: &str, port: u16, timeout: Duration) -> (bool, String) {
    let addrs = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect::<Vec<_>>(),
        Err(e) => return (false, format!("{host}:{port}: {e}")),
    };
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, timeout).is_ok() {
            return (true, String::new());
        }
    }
    (
        false,
        format!("TCP probe to {host}:{port}: connection refused or timed out"),
    )
}
