//! What a pod's containers share, set up before the first container and torn down after the
//! last: network, IPC and UTS namespaces (kept alive by bind mounts, no pause process),
//! `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, a shared `/dev/shm`, and volumes.
//! Also each container instance's writable rootfs (overlayfs, or a copy without it).

pub use super::instance::{prepare_rootfs, release_instance, resolve_user};

use super::bundle::PodNamespaces;
use crate::manifest::quantity::Quantity;
use crate::manifest::StaticPod;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
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
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SetupError + 'a {
    move |source| SetupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (s, t, f) = (CString::new(source)?, cstr(target)?, CString::new(fstype)?);
    let d = data.map(CString::new).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings or null.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lazily unmounts `target` if something is mounted there.
pub fn unmount(target: &Path) {
    if let Ok(t) = cstr(target) {
        // SAFETY: t is a valid path; EINVAL (not mounted) is ignored.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
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

/// The host's first non-loopback IPv4 address (the node's InternalIP), or 127.0.0.1; the
/// agent's `--node-ip` when it has one.
pub fn host_ip() -> String {
    if let Some(ip) = crate::config::node_ip() {
        return ip.to_string();
    }
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free below.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return "127.0.0.1".into();
        }
        let mut cur = addrs;
        let mut found = None;
        while !cur.is_null() {
            let a = &*cur;
            if !a.ifa_addr.is_null()
                && (*a.ifa_addr).sa_family as i32 == libc::AF_INET
                && a.ifa_flags & libc::IFF_LOOPBACK as u32 == 0
                && a.ifa_flags & libc::IFF_UP as u32 != 0
            {
                let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                found =
                    Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)).to_string());
                break;
            }
            cur = a.ifa_next;
        }
        libc::freeifaddrs(addrs);
        found.unwrap_or_else(|| "127.0.0.1".into())
    }
}

/// Creates the pod's network, IPC and UTS namespaces in a short-lived thread and pins each
/// with a bind mount on a file under `dir`. Loopback is brought up in the new netns.
fn create_namespaces(
    dir: &Path,
    hostname: &str,
    net: bool,
    ipc: bool,
) -> io::Result<PodNamespaces> {
    fs::create_dir_all(dir)?;
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    std::thread::Builder::new()
        .name("namespaces".into())
        .spawn(move || -> io::Result<PodNamespaces> {
            let mut flags = 0;
            if net {
                flags |= libc::CLONE_NEWNET | libc::CLONE_NEWUTS;
            }
            if ipc {
                flags |= libc::CLONE_NEWIPC;
            }
            // SAFETY: unshare affects only this thread's namespaces (net, uts, ipc are per task).
            if unsafe { libc::unshare(flags) } != 0 {
                return Err(io::Error::last_os_error());
            }
            if net {
                // SAFETY: the name points to hostname's bytes for its length.
                unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) };
                loopback_up()?;
            }
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            let mut out = PodNamespaces::default();
            for (kind, wanted, slot) in [
                ("net", net, &mut out.net),
                ("uts", net, &mut out.uts),
                ("ipc", ipc, &mut out.ipc),
            ] {
                if !wanted {
                    continue;
                }
                let target = dir.join(kind);
                fs::write(&target, b"")?;
                let source = format!("/proc/self/task/{tid}/ns/{kind}");
                mount(&source, &target, "none", libc::MS_BIND, None)?;
                *slot = Some(target);
            }
            Ok(out)
        })?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// `ip link set lo up`, with one ioctl, in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket and two ioctls on a zeroed, correctly sized ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS as libc::Ioctl, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            Err(err)
        } else {
            Ok(())
        }
    }
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
    pub pod_ip: String,
}

fn hosts_file(pod: &StaticPod, hostname: &str) -> String {
    let mut s = if pod.pod.spec.host_network {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "# Kubernetes-managed hosts file (staticlet).\n127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        )
    };
    if !pod.pod.spec.host_aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in &pod.pod.spec.host_aliases {
            s.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
        }
    }
    s
}

fn resolv_conf(pod: &StaticPod) -> String {
    let mut s = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if let Some(dns) = &pod.pod.spec.dns_config {
        for ns in &dns.nameservers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !dns.searches.is_empty() {
            s.push_str(&format!("search {}\n", dns.searches.join(" ")));
        }
    }
    s
}

/// Sets up (or re-adopts, when the agent restarts) everything the pod's containers share.
/// Idempotent: what already exists is kept.
pub fn setup(pod: &StaticPod, pod_dir: &Path) -> Result<Sandbox, SetupError> {
    let spec = &pod.pod.spec;
    let hostname = if spec.host_network {
        crate::config::default_node_name()
    } else {
        hostname(pod)
    };
    let host_ip = host_ip();
    let mut sb = Sandbox {
        hostname: hostname.clone(),
        pod_ip: if spec.host_network {
            host_ip.clone()
        } else {
            String::new()
        },
        host_ip,
        ..Default::default()
    };
    let etc = pod_dir.join("etc");
    fs::create_dir_all(&etc).map_err(io_err("creating", &etc))?;
    for (dest, name, content) in [
        ("/etc/hosts", "hosts", hosts_file(pod, &hostname)),
        ("/etc/resolv.conf", "resolv.conf", resolv_conf(pod)),
        ("/etc/hostname", "hostname", format!("{hostname}\n")),
    ] {
        let p = etc.join(name);
        crate::fsutil::write_replace(&p, content.as_bytes()).map_err(io_err("writing", &p))?;
        sb.etc_files.push((dest.to_string(), p));
    }
    let ns_dir = pod_dir.join("ns");
    let own_net = !spec.host_network;
    let own_ipc = !spec.host_ipc;
    let existing = |kind: &str| {
        let p = ns_dir.join(kind);
        crate::fsutil::mounts()
            .iter()
            .any(|(t, _)| *t == p)
            .then_some(p)
    };
    if (own_net && existing("net").is_none()) || (own_ipc && existing("ipc").is_none()) {
        teardown_namespaces(pod_dir);
        sb.namespaces = create_namespaces(&ns_dir, &hostname, own_net, own_ipc)
            .map_err(io_err("creating namespaces in", &ns_dir))?;
    } else {
        sb.namespaces = PodNamespaces {
            net: own_net.then(|| ns_dir.join("net")),
            uts: own_net.then(|| ns_dir.join("uts")),
            ipc: own_ipc.then(|| ns_dir.join("ipc")),
        };
    }
    if own_ipc {
        let shm = pod_dir.join("shm");
        fs::create_dir_all(&shm).map_err(io_err("creating", &shm))?;
        if !crate::fsutil::mounts().iter().any(|(t, _)| *t == shm) {
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
        let path = volume(pod_dir, v)?;
        sb.volumes.insert(v.name.clone(), path);
    }
    Ok(sb)
}

fn volume(pod_dir: &Path, v: &crate::manifest::pod::Volume) -> Result<PathBuf, SetupError> {
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
    fs::create_dir_all(&dir).map_err(io_err("creating emptyDir", &dir))?;
    if let Some(ed) = v
        .empty_dir
        .as_ref()
        .filter(|e| e.medium.as_deref() == Some("Memory"))
    {
        if !crate::fsutil::mounts().iter().any(|(t, _)| *t == dir) {
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
        }
    }
    Ok(dir)
}

fn teardown_namespaces(pod_dir: &Path) {
    for kind in ["net", "uts", "ipc"] {
        let p = pod_dir.join("ns").join(kind);
        unmount(&p);
        let _ = fs::remove_file(&p);
    }
}

/// Removes everything `setup` made: mounts first (lazily), then the directory.
pub fn teardown(pod_dir: &Path) -> io::Result<()> {
    teardown_namespaces(pod_dir);
    remove_unmounted(pod_dir)
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first.
fn unmount_below(dir: &Path) -> Vec<PathBuf> {
    let below = || -> Vec<PathBuf> {
        let mut m: Vec<PathBuf> = crate::fsutil::mounts()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| t.starts_with(dir))
            .collect();
        m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        m
    };
    for m in below() {
        unmount(&m);
    }
    below()
}

/// Removes `dir` once nothing is mounted below it. A bind mount left in place (a volume, a
/// subPath) would make the removal delete what it shows, so then nothing is removed.
///
/// A lazily detached mount can keep its mount point busy for a moment (a container's last
/// process still exiting, a propagated copy going away): `EBUSY` is retried with backoff for
/// a few seconds before it is reported.
pub fn remove_unmounted(dir: &Path) -> io::Result<()> {
    let mut pause = std::time::Duration::from_millis(20);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = unmount_below(dir);
        let result = match left.first() {
            Some(m) => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is still mounted; not removing {}",
                    m.display(),
                    dir.display()
                ),
            )),
            None => match fs::remove_dir_all(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
        };
        match result {
            Err(e)
                if e.kind() == io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < give_up =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            r => return r,
        }
    }
}
