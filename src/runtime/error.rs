//! Why a sandbox could not be set up or an instance not started, with what a user needs to
//! act (image, path, command and stderr). The core adds the pod and container when it logs
//! them, and shows a start error's kubelet reason ([`StartError::reason`]) in the status.

use crate::sys::blocking::JobError;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The sandbox set up before has lost a part since: not a failed start, the core sets
    /// the sandbox up again.
    #[error("pod sandbox is gone: {0}")]
    SandboxLost(String),
    #[error("{0}")]
    InvalidImageName(crate::image::reference::ReferenceError),
    /// The image store could not resolve or unpack the image.
    #[error("{0}")]
    Image(crate::image::ImageError),
    #[error("{message}")]
    Pull { image: String, message: String },
    #[error("image {image} is not in the local store and imagePullPolicy is Never; import it with `staticlet images import`")]
    NeverPull { image: String },
    #[error("image {image}: pulled but not found in the store")]
    PulledButMissing { image: String },
    #[error("{0}")]
    User(#[from] super::instance::UserError),
    #[error("{0}")]
    SubPath(#[from] super::subpath::SubPathError),
    /// runAsNonRoot, seccomp and sysctl decisions (each names its kubelet reason).
    #[error("{0}")]
    Security(#[from] super::security::SecurityError),
    /// The OCI spec could not be made from the pod and the image.
    #[error("{0}")]
    Bundle(#[from] super::bundle::BundleError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Record(#[from] super::records::RecordError),
    #[error("{0}")]
    Job(#[from] JobError),
    #[error("cannot start the monitor {}: {source}", exe.display())]
    Monitor {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("the monitor reported a start but wrote no started.json")]
    NoStartedRecord,
    /// The runtime refused to run the container: its own message (command and stderr).
    #[error("{0}")]
    Run(String),
    #[error("the runtime did not start the container within {}s (runtimeRequestTimeout)", .0.as_secs())]
    TimedOut(Duration),
    #[error(
        "container {id} could not be removed after a start that timed out; not starting another"
    )]
    NotRemoved { id: String },
}

impl StartError {
    /// The kubelet's waiting reason for a container that could not start this way.
    pub fn reason(&self) -> &'static str {
        match self {
            StartError::SandboxLost(_) => "ContainerCreating",
            StartError::InvalidImageName(_) => "InvalidImageName",
            StartError::Image(_)
            | StartError::Pull { .. }
            | StartError::PulledButMissing { .. } => "ErrImagePull",
            StartError::NeverPull { .. } => "ErrImageNeverPull",
            StartError::Security(e) => e.reason(),
            StartError::User(_) | StartError::SubPath(_) | StartError::Bundle(_) => {
                "CreateContainerConfigError"
            }
            StartError::Io { .. }
            | StartError::Record(_)
            | StartError::Job(_)
            | StartError::Monitor { .. } => "CreateContainerError",
            StartError::NoStartedRecord => "StartError",
            StartError::Run(_) | StartError::TimedOut(_) | StartError::NotRemoved { .. } => {
                "RunContainerError"
            }
        }
    }

    /// Whether the container was created and failed (counts as a run: restartCount goes
    /// up), as opposed to never created (an image missing): the kubelet's StartError vs
    /// ErrImage*.
    pub fn ran(&self) -> bool {
        matches!(
            self,
            StartError::NoStartedRecord | StartError::Run(_) | StartError::TimedOut(_)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Record(#[from] super::records::RecordError),
    #[error(transparent)]
    Setup(#[from] super::podsetup::SetupError),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl SandboxError {
    /// The kubelet's event reason: a volume that cannot be mounted, or the sandbox itself.
    pub fn reason(&self) -> &'static str {
        match self {
            SandboxError::Setup(super::podsetup::SetupError::HostPath { .. }) => "FailedMount",
            _ => "FailedCreatePodSandBox",
        }
    }
}

/// A pod that could not be removed completely.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tearing down: {0}")]
    Job(#[from] JobError),
}
