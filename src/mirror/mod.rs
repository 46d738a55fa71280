//! Mirror pods: the last stage of the pipeline, the cluster's view of this gateway. When a
//! kubeconfig is configured, a thread registers the Node, keeps its Lease, keeps one mirror
//! pod per static pod in the API server, as a kubelet does for its static pods, and posts the
//! agent's events; the kubelet API ([`crate::kubelet_api`]) starts beside it, with the same
//! client.
//!
//! It only reads the status board, so nothing on the path that starts or stops a container
//! ever waits for the network; the API server being away for hours changes nothing on the
//! gateway, and the cluster catches up within seconds of its return.

pub mod api;
mod diff;
pub mod kubeconfig;
mod link;
pub mod node;
mod pods;
mod post;
mod register;
mod report;
pub mod sync;
mod watch;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod watch_tests;

pub use diff::{mirror_body, plan, status_patch, wants, Op, Why};

use crate::config::Config;
use crate::events::Recorder;
use crate::status::StatusBoard;
use std::sync::Arc;
use std::time::Duration;

/// Every API call gives up after this long (the sync retries with backoff).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Kubeconfig(#[from] kubeconfig::KubeconfigError),
    #[error(transparent)]
    Client(#[from] api::ApiError),
    #[error("cannot start the mirror sync thread: {0}")]
    Thread(std::io::Error),
}

/// The API server this agent reports to, from its kubeconfig, and a client for it.
pub struct Cluster {
    kubeconfig: kubeconfig::Kubeconfig,
    pub client: api::HttpApi,
}

/// Reads the kubeconfig (`None` without one) and makes the client. An error is a usage error
/// (a bad kubeconfig, certificate files that cannot be used); an unreachable server is not
/// one: nothing is sent yet.
pub fn connect(config: &Config) -> Result<Option<Cluster>, MirrorError> {
    let Some(path) = &config.kubeconfig else {
        return Ok(None);
    };
    let kc = kubeconfig::load(path, config.kubeconfig_context.as_deref())?;
    if kc.insecure {
        log::warn!(
            "kubeconfig {}: insecure-skip-tls-verify is set: the API server {} is not authenticated",
            kc.path.display(),
            kc.server
        );
    }
    let client = api::HttpApi::new(&kc, CALL_TIMEOUT)?;
    Ok(Some(Cluster {
        kubeconfig: kc,
        client,
    }))
}

/// Starts the sync thread; the kubelet API's port (if it listens) goes into the Node's
/// `daemonEndpoints`. The thread keeps trying while the server is unreachable.
pub fn start(
    config: &Config,
    cluster: Cluster,
    kubelet_port: Option<u16>,
    board: Arc<StatusBoard>,
    events: Arc<Recorder>,
) -> Result<(), MirrorError> {
    let Cluster {
        kubeconfig: kc,
        client,
    } = cluster;
    let runtime = config.runtime_path.clone();
    let mut settings = sync::Settings {
        node: config.node_name.clone(),
        node_labels: config.node_labels.clone(),
        system_reserved: config.system_reserved.clone(),
        server: kc.server.clone(),
        runtime_version: String::new(),
        kubelet_port,
        node_ip: config.node_ip.map(|ip| ip.to_string()),
    };
    log::info!(
        "mirror pods: API server {} (kubeconfig {}, context {})",
        kc.server,
        kc.path.display(),
        kc.context
    );
    std::thread::Builder::new()
        .name("mirror-sync".into())
        .spawn(move || {
            settings.runtime_version = node::runtime_version(&runtime);
            let facts = node::HostFacts::read(&settings.runtime_version);
            let timing = sync::Timing::default();
            sync::Syncer::new(client, settings, timing, board, facts, events).run();
        })
        .map_err(MirrorError::Thread)?;
    Ok(())
}
