//! Network probes (httpGet, tcpSocket). Blocking, with a timeout; run on a thread that has
//! joined the pod's network namespace (see the crun runtime's handlers).

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// An HTTP GET; 200 to 399 is success, as in the kubelet.
pub fn http_get(url: &str, headers: &[(String, String)], timeout: Duration) -> (bool, String) {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .input_buffer_size(8 * 1024)
        .output_buffer_size(8 * 1024)
        .max_idle_connections(0)
        .build();
    let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), Literal);
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

/// Takes an IP literal (the pod's IP, or 127.0.0.1 with hostNetwork: nearly every probe) as
/// it stands. ureq's own resolver starts a thread for every lookup, to bound it by the
/// timeout, which only a name needs (`httpGet.host: example.com`): names still go to it.
#[derive(Debug)]
struct Literal;

impl Resolver for Literal {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        let Ok(ip) = ip else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let mut addrs = self.empty();
        addrs.push(SocketAddr::new(ip, uri.port_u16().unwrap_or(default_port)));
        Ok(addrs)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering `status` to every request, on `addr`; returns its URL base.
    fn server(addr: &str, status: u16) -> Option<String> {
        let server = tiny_http::Server::http(addr).ok()?;
        let base = match server.server_addr().to_ip()? {
            SocketAddr::V4(a) => format!("http://{a}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
        };
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let _ = req.respond(tiny_http::Response::empty(status));
            }
        });
        Some(base)
    }

    #[test]
    fn http_probes_reach_ip_literals_and_names() {
        let t = Duration::from_secs(5);
        let ok = server("127.0.0.1:0", 204).unwrap();
        assert_eq!(
            http_get(&format!("{ok}/healthz"), &[], t),
            (true, format!("HTTP probe to {ok}/healthz answered 204"))
        );
        let port = ok.rsplit(':').next().unwrap();
        assert!(http_get(&format!("http://localhost:{port}/"), &[], t).0);
        let bad = server("127.0.0.1:0", 503).unwrap();
        assert!(!http_get(&format!("{bad}/"), &[], t).0);
        // IPv6 loopback, where the host has it.
        if let Some(v6) = server("[::1]:0", 200) {
            assert!(http_get(&format!("{v6}/"), &[], t).0, "{v6}");
        }
        let (up, message) = http_get("http://no-such-host.invalid/", &[], t);
        assert!(!up && message.contains("no-such-host.invalid"), "{message}");
    }
}
