//! The kubelet API, as far as the cluster needs it from a gateway: HTTPS on the kubelet port
//! (10250) serving `/containerLogs/<namespace>/<pod>/<container>` and `/healthz`, so that
//! `kubectl logs [-f]` of a mirror pod works through the API server, which proxies it here.
//! Nothing else of the kubelet's API is exposed (no exec, attach, port-forward, stats).
//!
//! It runs only with a kubeconfig (the reviews need the API server), on a thread of its own,
//! with the settings of a KubeletConfiguration (`port`, `address`, `tlsCertFile`,
//! `tlsPrivateKeyFile`, `authentication.x509.clientCAFile`, `authentication.webhook`,
//! `authorization.mode`) and the kubelet's defaults: token webhook on, Webhook authorization,
//! anonymous requests refused. The answers are the status endpoint's own (same files, same
//! follow machinery, same bounds).

pub mod auth;
mod serve;
pub mod tls;

use crate::config::Config;
use crate::mirror::api::Api;
use crate::status::StatusBoard;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("kubelet API: {0}")]
    Tls(#[from] tls::TlsError),
    #[error(
        "kubelet API: cannot listen on {addr}: {source}; set port (0 turns it off) or address"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("kubelet API: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the kubelet API when configured (port not 0); returns the port it listens on.
/// Bad certificate files and a taken port are errors at start, as for the kubelet.
pub fn start<A: Api>(
    config: &Config,
    api: A,
    board: Arc<StatusBoard>,
) -> Result<Option<u16>, ServeError> {
    let k = config.kubelet_api.clone();
    if k.port == 0 {
        log::info!("kubelet API: off (port 0)");
        return Ok(None);
    }
    let names = tls::serving_names(&config.node_name, config.node_ip);
    let tls_config = tls::server_config(&k, &config.root_dir, &names)?;
    let addr = SocketAddr::new(k.address, k.port);
    let listener = TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let node = config.node_name.clone();
    log::info!(
        "kubelet API: https://{addr} (client certificates: {}; bearer tokens: {}; authorization: {:?})",
        k.client_ca_file
            .as_ref()
            .map_or("off (no clientCAFile)".to_string(), |p| format!("signed by {}", p.display())),
        if k.webhook_authn { "TokenReview" } else { "off" },
        k.authz_mode,
    );
    std::thread::Builder::new()
        .name("kubelet-api".into())
        .spawn(move || {
            crate::status::server::serve_with(listener, "kubelet API", |ex| serve::Secure {
                http: crate::status::server::http_builder(),
                ctx: crate::status::server::context(ex, board, None),
                tls: futures_rustls::TlsAcceptor::from(tls_config),
                auth: Rc::new(auth::Auth::new(api, k, &node)),
            })
        })
        .map_err(ServeError::Thread)?;
    Ok(Some(addr.port()))
}
