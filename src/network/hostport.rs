//! `hostPort`s: the port mappings handed to the CNI plugins that take them (portmap's
//! `portMappings` capability, as containerd builds them), and the ports themselves, held
//! open by the agent for as long as the pod has them, as the kubelet's hostport manager did
//! for kubenet: a port another process (or pod) already has is refused by name instead of
//! being silently shadowed by a DNAT rule, and nothing else can take it while the pod runs.

use super::NetworkError;
use crate::manifest::StaticPod;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// Lower-case, as the CNI conventions spell it: `tcp`, `udp`, `sctp`.
    pub protocol: String,
    pub host_ip: String,
}

impl PortMapping {
    fn label(&self) -> String {
        let ip = if self.host_ip.is_empty() {
            "all host addresses"
        } else {
            &self.host_ip
        };
        format!(
            "hostPort {}/{} ({ip})",
            self.host_port,
            self.protocol.to_ascii_uppercase()
        )
    }
}

/// The pod's host ports, from its (app) containers, as the kubelet collects them.
pub fn mappings(pod: &StaticPod) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for c in &pod.pod.spec.containers {
        for p in &c.ports {
            let (Some(host), Ok(container)) = (
                p.host_port
                    .and_then(|h| u16::try_from(h).ok())
                    .filter(|h| *h > 0),
                u16::try_from(p.container_port),
            ) else {
                continue;
            };
            out.push(PortMapping {
                host_port: host,
                container_port: container,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out
}

/// The `portMappings` capability argument.
pub fn capability_arg(maps: &[PortMapping]) -> Value {
    Value::Array(
        maps.iter()
            .map(|m| {
                json!({"hostPort": m.host_port, "containerPort": m.container_port,
                       "protocol": m.protocol, "hostIP": m.host_ip})
            })
            .collect(),
    )
}

struct Held {
    uid: String,
    pod: String,
    mapping: PortMapping,
    /// Only kept open, never read: it keeps the port.
    _socket: OwnedFd,
}

/// Every port this agent holds, with the pod that has it.
static HELD: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<Held>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds the pod's ports. A port that a previous version of the same pod (same namespace and
/// name: an edit) still holds is handed over; one held by another pod or any other process
/// is refused, naming the port and, when known, the pod. On error nothing stays held.
pub fn hold(uid: &str, pod: &str, maps: &[PortMapping]) -> Result<(), NetworkError> {
    let mut all = held();
    let mut taken = Vec::new();
    for m in maps {
        if all.iter().any(|h| h.uid == uid && h.mapping == *m) {
            continue;
        }
        if let Some(i) = all.iter().position(|h| same_port(&h.mapping, m)) {
            if all[i].pod == pod {
                all[i].uid = uid.to_string();
                continue;
            }
            let other = all[i].pod.clone();
            all.retain(|h| !(h.uid == uid && taken.contains(&h.mapping)));
            return Err(NetworkError::HostPortTaken {
                port: m.label(),
                by: format!("pod {other}"),
            });
        }
        // SCTP needs a kernel module most gateways lack; its mapping is left to portmap.
        if m.protocol == "sctp" {
            continue;
        }
        match bind(m) {
            Ok(socket) => {
                taken.push(m.clone());
                all.push(Held {
                    uid: uid.to_string(),
                    pod: pod.to_string(),
                    mapping: m.clone(),
                    _socket: socket,
                });
            }
            Err(e) => {
                all.retain(|h| !(h.uid == uid && taken.contains(&h.mapping)));
                return Err(NetworkError::HostPortTaken {
                    port: m.label(),
                    by: format!("this host ({e})"),
                });
            }
        }
    }
    Ok(())
}

/// Lets go of every port the pod holds.
pub fn release(uid: &str) {
    held().retain(|h| h.uid != uid);
}

/// The ports held for a pod (for tests and logs).
pub fn held_by(uid: &str) -> Vec<u16> {
    held()
        .iter()
        .filter(|h| h.uid == uid)
        .map(|h| h.mapping.host_port)
        .collect()
}

fn same_port(a: &PortMapping, b: &PortMapping) -> bool {
    a.host_port == b.host_port
        && a.protocol == b.protocol
        && (a.host_ip == b.host_ip || a.host_ip.is_empty() || b.host_ip.is_empty())
}

fn bind(m: &PortMapping) -> std::io::Result<OwnedFd> {
    let ip: IpAddr = if m.host_ip.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        m.host_ip.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP address")
        })?
    };
    let addr = SocketAddr::new(ip, m.host_port);
    // Listening, as the kubelet did: a port in LISTEN state cannot be bound by anyone else,
    // whatever socket options they use. Connections never reach it: portmap's DNAT rules
    // send them to the pod first.
    match m.protocol.as_str() {
        "udp" => UdpSocket::bind(addr).map(OwnedFd::from),
        _ => TcpListener::bind(addr).map(OwnedFd::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(port: u16) -> PortMapping {
        PortMapping {
            host_port: port,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }
    }

    #[test]
    fn a_port_is_held_once_and_handed_over_to_the_next_version() {
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        hold("uid-a", "ns/web", &[map(port)]).unwrap();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_err(), "held");
        let e = hold("uid-b", "ns/other", &[map(port)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("hostPort {port}/TCP")) && e.contains("pod ns/web"),
            "{e}"
        );
        // An edit of ns/web (a new UID) takes it over; the old version's release keeps it.
        hold("uid-c", "ns/web", &[map(port)]).unwrap();
        release("uid-a");
        assert_eq!(held_by("uid-c"), vec![port]);
        release("uid-c");
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "released");
    }

    #[test]
    fn a_port_another_process_has_is_refused_and_nothing_stays_held() {
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = other.local_addr().unwrap().port();
        let free = TcpListener::bind("127.0.0.1:0").unwrap();
        let ok = free.local_addr().unwrap().port();
        drop(free);
        let e = hold("uid-x", "ns/x", &[map(ok), map(busy)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("hostPort {busy}/TCP (127.0.0.1)")) && e.contains("this host"),
            "{e}"
        );
        assert!(held_by("uid-x").is_empty());
        assert!(TcpListener::bind(("127.0.0.1", ok)).is_ok());
    }
}
