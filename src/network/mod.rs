//! Pod networking through CNI, the contract the kubelet and containerd use: a pod that is not
//! `hostNetwork` gets its network namespace attached to the network configured in
//! `cniConfDir` by the reference plugins (bridge, host-local, portmap, ...) found in
//! `cniBinDir`; staticlet implements no bridge, IPAM or NAT of its own. With no configuration
//! at all, a documented default network is written on first use ([`conf`]).
//!
//! The runtime calls [`attach`] when it sets up a pod sandbox (ADD, or CHECK when an agent
//! restart finds the attachment in place) and [`release`] when it removes one (DEL). What was
//! attached is recorded per pod ([`record`]), so DEL always undoes exactly what ADD did, across
//! agent restarts and power cuts. The pod's resolver and hosts files are composed in [`dns`].

mod attach;
pub mod conf;
pub mod dns;
mod exec;
mod hostaddr;
pub mod hostport;
mod record;
mod result;

pub use attach::{attach, release, release_orphans, IF_NAME};
pub use exec::has_plugin;
pub use hostaddr::host_ip;
pub use record::RecordError;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no valid CNI network configuration in {}: {problems}; fix the file(s), or remove them all to get staticlet's default network", dir.display())]
    NoValidConfig { dir: PathBuf, problems: String },
    #[error("CNI configuration {}: {message}", file.display())]
    BadConfig { file: PathBuf, message: String },
    #[error("writing the default CNI network {}: {source}; set cniConfDir to a writable directory", file.display())]
    WriteDefault {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin:?} not found in {dirs}: install the CNI plugins (Debian: containernetworking-plugins, Buildroot: BR2_PACKAGE_CNI_PLUGINS) or set cniBinDir")]
    PluginMissing { plugin: String, dirs: String },
    #[error("plugin type={plugin:?} failed ({command}): {message}")]
    Plugin {
        plugin: String,
        command: String,
        message: String,
    },
    #[error("plugin type={plugin:?} answered no CNI result: {message}")]
    NoResult { plugin: String, message: String },
    #[error("network {name:?} ({}): {source}", file.display())]
    InNetwork {
        name: String,
        file: PathBuf,
        source: Box<NetworkError>,
    },
    #[error("{port} is already in use by {by}: stop what uses it, or choose another hostPort")]
    HostPortTaken { port: String, by: String },
    #[error("the pod has hostPort {ports}, but no plugin of {} takes port mappings: add {{\"type\": \"portmap\", \"capabilities\": {{\"portMappings\": true}}}} to its plugins", file.display())]
    NoPortMapping { file: PathBuf, ports: String },
    #[error("releasing the pod's previous network attachment: {source}")]
    Previous { source: Box<NetworkError> },
    #[error(transparent)]
    Record(#[from] RecordError),
}
