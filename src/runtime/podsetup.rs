//! What a pod's containers share, set up before the first container and torn down after the
//! last: network, IPC and UTS namespaces (kept alive by bind mounts, no pause process), the
//! network namespace's attachment to the pod network ([`crate::network`]), `/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname`, a shared `/dev/shm`, and volumes.
//! Also each container instance's writable rootfs (overlayfs, or a copy without it).

use crate::sys::mount::{mount, remove_unmounted, unmount};

mod downward;
mod namespaces;
use crate::network::host_ip;
use namespaces::create_namespaces;

use super::bundle::PodNamespaces;
use crate::config::NetworkConfig;
use crate::manifest::quantity::Quantity;
use crate::manifest::StaticPod;
use crate::network;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("volume {volume}: hostPath {}: {message}", path.display())]
    HostPath {
        volume: String,
        path: PathBuf,
        message: String,
    },
    #[error("setting up the pod network: {0}")]
    Network(network::NetworkError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SetupError + 'a {
    move |source| SetupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The pod's hostname: `spec.hostname`, or the pod name cut to a DNS label.
pub fn hostname(pod: &StaticPod) -> String {
    if let Some(h) = &pod.pod.spec.hostname {
        return h.clone();
    }
    let mut h: String = pod.name().chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h.replace('.', "-")
}

/// What `setup` created for a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sandbox {
    pub namespaces: PodNamespaces,
    pub etc_files: Vec<(String, PathBuf)>,
    pub shm: Option<PathBuf>,
    pub volumes: BTreeMap<String, PathBuf>,
    pub hostname: String,
    pub host_ip: String,
    /// The first of `pod_ips` (the host's address for a hostNetwork pod); empty without one.
    pub pod_ip: String,
    /// Every address of the pod, IPv4 first, as `status.podIPs` lists them.
    pub pod_ips: Vec<String>,
}

impl Sandbox {
    /// Where httpGet and tcpSocket probes without a `host` go: the pod IP, as the kubelet
    /// probes; loopback for a pod without its own address (hostNetwork, no network).
    pub fn probe_host(&self) -> String {
        if self.namespaces.net.is_some() && !self.pod_ip.is_empty() {
            self.pod_ip.clone()
        } else {
            "127.0.0.1".into()
        }
    }
}

/// Sets up (or re-adopts, when the agent restarts) everything the pod's containers share.
/// Idempotent: what already exists is kept, the network attachment included.
pub fn setup(
    pod: &StaticPod,
    pod_dir: &Path,
    net: &NetworkConfig,
    node: &crate::runtime::bundle::Allocatable,
    exe: &Path,
) -> Result<Sandbox, SetupError> {
    let spec = &pod.pod.spec;
    let hostname = if spec.host_network {
        crate::config::default_node_name()
    } else {
        hostname(pod)
    };
    let host_ip = host_ip();
    let mut sb = Sandbox {
        hostname: hostname.clone(),
        host_ip,
        ..Default::default()
    };
    let etc = pod_dir.join("etc");
    fs::create_dir_all(&etc).map_err(io_err("creating", &etc))?;
    let ns_dir = pod_dir.join("ns");
    let own_net = !spec.host_network;
    let own_ipc = !spec.host_ipc;
    let existing = |kind: &str| {
        let p = ns_dir.join(kind);
        crate::sys::fsutil::is_mount_point(&p).then_some(p)
    };
    if (own_net && existing("net").is_none()) || (own_ipc && existing("ipc").is_none()) {
        // The old namespace is about to go: detach it while DEL can still see it.
        network::release(pod_dir).map_err(SetupError::Network)?;
        teardown_namespaces(pod_dir);
        sb.namespaces = create_namespaces(&ns_dir, &hostname, own_net, own_ipc)
            .map_err(io_err("creating namespaces in", &ns_dir))?;
    } else {
        sb.namespaces = PodNamespaces {
            net: own_net.then(|| ns_dir.join("net")),
            uts: own_net.then(|| ns_dir.join("uts")),
            ipc: own_ipc.then(|| ns_dir.join("ipc")),
            pid: None,
        };
    }
    if spec.share_process_namespace == Some(true) {
        sb.namespaces.pid = Some(
            crate::runtime::pidns::ensure(exe, &ns_dir)
                .map_err(io_err("making the shared PID namespace in", &ns_dir))?,
        );
    }
    if own_ipc {
        let shm = pod_dir.join("shm");
        let mounted = crate::sys::fsutil::is_mount_point(&shm);
        fs::create_dir_all(&shm).map_err(io_err("creating", &shm))?;
        if !mounted {
            mount(
                "shm",
                &shm,
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some("mode=1777,size=65536k"),
            )
            .map_err(io_err("mounting /dev/shm at", &shm))?;
        }
        sb.shm = Some(shm);
    }
    for v in &spec.volumes {
        let path = volume(pod, pod_dir, v)?;
        if let Some(files) = crate::manifest::downward::DownwardVolume::of(v, &v.name) {
            let fs_group = spec
                .security_context
                .as_ref()
                .and_then(|s| s.fs_group)
                .and_then(|g| u32::try_from(g).ok());
            files
                .map_err(io::Error::other)
                .and_then(|files| downward::write(pod, &path, &files, fs_group, node))
                .map_err(io_err("writing the downwardAPI files of", &path))?;
        }
        sb.volumes.insert(v.name.clone(), path);
    }
    // Last, so that a bad volume never takes an address.
    let ips = match &sb.namespaces.net {
        Some(netns) => network::attach(pod, pod_dir, netns, net).map_err(SetupError::Network)?,
        None => Vec::new(),
    };
    sb.pod_ips = if spec.host_network {
        vec![sb.host_ip.clone()]
    } else {
        ips.iter().map(|ip| ip.to_string()).collect()
    };
    sb.pod_ip = sb.pod_ips.first().cloned().unwrap_or_default();
    let hosts = if spec.host_network {
        network::dns::node_hosts_file(pod)
    } else {
        network::dns::hosts_file(pod, &hostname, &ips, net)
    };
    for (dest, name, content) in [
        ("/etc/hosts", "hosts", hosts),
        (
            "/etc/resolv.conf",
            "resolv.conf",
            network::dns::resolv_conf(pod, net),
        ),
        ("/etc/hostname", "hostname", format!("{hostname}\n")),
    ] {
        let p = etc.join(name);
        crate::sys::fsutil::write_replace(&p, content.as_bytes()).map_err(io_err("writing", &p))?;
        sb.etc_files.push((dest.to_string(), p));
    }
    Ok(sb)
}

fn volume(
    pod: &StaticPod,
    pod_dir: &Path,
    v: &crate::manifest::pod::Volume,
) -> Result<PathBuf, SetupError> {
    if let Some(hp) = &v.host_path {
        let path = PathBuf::from(&hp.path);
        let fail = |message: &str| SetupError::HostPath {
            volume: v.name.clone(),
            path: path.clone(),
            message: message.into(),
        };
        let meta = fs::metadata(&path);
        use std::os::unix::fs::FileTypeExt;
        match hp.kind.as_deref().unwrap_or("") {
            "" => {}
            "DirectoryOrCreate" => {
                if meta.is_err() {
                    fs::create_dir_all(&path).map_err(io_err("creating hostPath", &path))?;
                } else if !meta.as_ref().map(|m| m.is_dir()).unwrap_or(false) {
                    return Err(fail("exists and is not a directory"));
                }
            }
            "Directory" if !meta.as_ref().map(|m| m.is_dir()).unwrap_or(false) => {
                return Err(fail("is not a directory (type: Directory)"))
            }
            "FileOrCreate" => {
                if meta.is_err() {
                    fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(io_err("creating hostPath", &path))?;
                } else if !meta.as_ref().map(|m| m.is_file()).unwrap_or(false) {
                    return Err(fail("exists and is not a file"));
                }
            }
            "File" if !meta.as_ref().map(|m| m.is_file()).unwrap_or(false) => {
                return Err(fail("is not a file (type: File)"))
            }
            "Socket"
                if !meta
                    .as_ref()
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false) =>
            {
                return Err(fail("is not a socket (type: Socket)"))
            }
            "CharDevice"
                if !meta
                    .as_ref()
                    .map(|m| m.file_type().is_char_device())
                    .unwrap_or(false) =>
            {
                return Err(fail("is not a character device (type: CharDevice)"))
            }
            "BlockDevice"
                if !meta
                    .as_ref()
                    .map(|m| m.file_type().is_block_device())
                    .unwrap_or(false) =>
            {
                return Err(fail("is not a block device (type: BlockDevice)"))
            }
            _ => {}
        }
        return Ok(path);
    }
    let dir = pod_dir.join("volumes").join(&v.name);
    // Set up once, when new, as the kubelet's emptyDir does (never again at adoption).
    let mut fresh = !dir.exists();
    let mounted = crate::sys::fsutil::is_mount_point(&dir);
    fs::create_dir_all(&dir).map_err(io_err("creating emptyDir", &dir))?;
    if let Some(ed) = v
        .empty_dir
        .as_ref()
        .filter(|e| e.medium.as_deref() == Some("Memory"))
    {
        if !mounted {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| Quantity::parse(&q.as_text()))
                .map(|q| format!(",size={}", q.value()))
                .unwrap_or_default();
            mount(
                "tmpfs",
                &dir,
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&format!("mode=0777{size}")),
            )
            .map_err(io_err("mounting tmpfs at", &dir))?;
            fresh = true;
        }
    }
    if fresh {
        super::security::fsgroup::prepare_for_pod(pod, &dir)
            .map_err(io_err("setting the mode and fsGroup of emptyDir", &dir))?;
    }
    Ok(dir)
}

fn teardown_namespaces(pod_dir: &Path) {
    crate::runtime::pidns::release(&pod_dir.join("ns"));
    for kind in ["net", "uts", "ipc"] {
        let p = pod_dir.join("ns").join(kind);
        unmount(&p);
        let _ = fs::remove_file(&p);
    }
}

/// Removes everything `setup` made: the network attachment first (DEL while the namespace is
/// still there), then mounts (lazily), then the directory. An attachment DEL could not
/// release keeps its record, and the next start of the agent releases it.
pub fn teardown(pod_dir: &Path) -> io::Result<()> {
    let network = network::release(pod_dir);
    teardown_namespaces(pod_dir);
    remove_unmounted(pod_dir)?;
    network.map_err(|e| {
        io::Error::other(format!(
            "{e}; the next start of staticlet releases it (its record is kept)"
        ))
    })
}
