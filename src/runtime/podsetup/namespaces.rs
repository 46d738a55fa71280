//! The pod's own namespaces, made without a pause process: a short-lived thread unshares
//! them and each is pinned by a bind mount, which keeps it alive for crun to join by path
//! and for the CNI plugins to attach.

use super::mount;
use crate::runtime::bundle::PodNamespaces;
use std::fs;
use std::io;
use std::path::Path;

/// Creates the pod's network, IPC and UTS namespaces in a short-lived thread and pins each
/// with a bind mount on a file under `dir`. Loopback is brought up in the new netns.
pub(super) fn create_namespaces(
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
