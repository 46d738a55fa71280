//! Why the agent could not start. Every variant names what to look at; [`AgentError::is_usage`]
//! tells a configuration problem (exit code 2) from a failure of the host (exit code 1).

use crate::runtime::rootlock::LockError;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}; stop it first or give another --root-dir")]
    Locked(LockError),
    #[error("{0}")]
    Lock(LockError),
    #[error("runtime {} not found on PATH; install crun or set --runtime", .0.display())]
    RuntimeNotFound(PathBuf),
    #[error(transparent)]
    ImageStore(#[from] crate::image::ImageError),
    #[error("cannot find my own executable: {0}")]
    OwnExe(std::io::Error),
    #[error("status endpoint {addr}: {source}")]
    StatusEndpoint {
        addr: SocketAddr,
        source: crate::status::server::ServerError,
    },
    #[error(transparent)]
    Mirror(#[from] crate::mirror::MirrorError),
    #[error(transparent)]
    KubeletApi(#[from] crate::kubelet_api::ServeError),
    #[error(transparent)]
    ManifestUrl(crate::source::url::UrlError),
    #[error(transparent)]
    Trust(crate::source::trust::TrustError),
}

impl AgentError {
    /// Whether the user can fix it by changing flags or the configuration.
    pub fn is_usage(&self) -> bool {
        match self {
            AgentError::Locked(_)
            | AgentError::RuntimeNotFound(_)
            | AgentError::ManifestUrl(_)
            | AgentError::Trust(_)
            // Certificate files that cannot be used, a port that is taken.
            | AgentError::KubeletApi(_) => true,
            // A bad kubeconfig is a usage error; a thread that cannot start is not.
            AgentError::Mirror(e) => !matches!(e, crate::mirror::MirrorError::Thread(_)),
            _ => false,
        }
    }
}

impl From<LockError> for AgentError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Held { .. } => AgentError::Locked(e),
            LockError::Io { .. } => AgentError::Lock(e),
        }
    }
}
