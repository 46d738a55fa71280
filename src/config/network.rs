//! The pod network's settings: where the CNI configuration and plugins are (`cniConfDir`,
//! `cniBinDir`, as the kubelet's old `--cni-conf-dir`/`--cni-bin-dir` and containerd's CRI
//! plugin name them), the subnet of the default network (`podCIDR`), and the DNS a pod gets
//! (`clusterDNS`, `clusterDomain`, `resolvConf`: the KubeletConfiguration keys). Kept apart
//! from the rest of the configuration so the network stage reads one small value.

use super::{from_file_dir, ConfigError};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Debian's containernetworking-plugins installs to /usr/lib/cni, Buildroot's cni-plugins and
/// upstream's release tarballs to /opt/cni/bin: both are searched by default.
pub const DEFAULT_CNI_BIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// The default network's subnet: a /24 (253 pods) that no common container tool uses by
/// default (podman and containerd use 10.88.0.0/16, CRI-O 10.85.0.0/16, k3s 10.42.0.0/16).
pub const DEFAULT_POD_CIDR: &str = "10.77.0.0/24";

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Normalised `address/prefix`; only used when staticlet writes the default network.
    pub pod_cidr: String,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// The host's resolver configuration pods with `dnsPolicy: Default` get; `None` when set
    /// to the empty string, which the kubelet takes as "no host DNS" (nameserver 127.0.0.1).
    pub resolv_conf: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            cni_conf_dir: PathBuf::from(DEFAULT_CNI_CONF_DIR),
            cni_bin_dirs: DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
            pod_cidr: DEFAULT_POD_CIDR.into(),
            cluster_dns: Vec::new(),
            cluster_domain: String::new(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
        }
    }
}

/// `cniBinDir` as written: a comma-separated string (the kubelet flag's form) or a list.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Dirs {
    One(String),
    Many(Vec<String>),
}

impl Dirs {
    fn split(self) -> Vec<String> {
        let all = match self {
            Dirs::One(s) => s.split(',').map(str::to_string).collect(),
            Dirs::Many(v) => v,
        };
        all.into_iter()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect()
    }
}

/// The file's keys, as read.
#[derive(Debug, Default)]
pub struct Keys {
    pub cni_conf_dir: Option<String>,
    pub cni_bin_dir: Option<Dirs>,
    pub pod_cidr: Option<String>,
    pub cluster_dns: Option<Vec<String>>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<String>,
}

/// Turns the file's keys into settings; relative paths are taken from the file's directory.
pub fn resolve(k: Keys, file: &Path) -> Result<NetworkConfig, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        origin: file.display().to_string(),
        field: field.into(),
        message,
    };
    let mut n = NetworkConfig::default();
    if let Some(d) = k.cni_conf_dir.filter(|d| !d.is_empty()) {
        n.cni_conf_dir = from_file_dir(file, d);
    }
    if let Some(dirs) = k.cni_bin_dir {
        let dirs = dirs.split();
        if dirs.is_empty() {
            return Err(invalid("cniBinDir", "names no directory".into()));
        }
        n.cni_bin_dirs = dirs.into_iter().map(|d| from_file_dir(file, d)).collect();
    }
    if let Some(c) = k.pod_cidr.filter(|c| !c.is_empty()) {
        n.pod_cidr = parse_cidr(&c).map_err(|m| invalid("podCIDR", m))?;
    }
    for (i, ip) in k.cluster_dns.unwrap_or_default().iter().enumerate() {
        n.cluster_dns.push(ip.trim().parse().map_err(|_| {
            invalid(
                &format!("clusterDNS[{i}]"),
                format!("{ip:?} is not an IP address"),
            )
        })?);
    }
    if let Some(d) = k.cluster_domain {
        n.cluster_domain = parse_domain(&d).map_err(|m| invalid("clusterDomain", m))?;
    }
    if let Some(r) = k.resolv_conf {
        n.resolv_conf = (!r.is_empty()).then(|| from_file_dir(file, r));
    }
    Ok(n)
}

/// The network flags of `run`, applied over the file's settings.
#[derive(Debug, Default)]
pub struct Flags<'a> {
    pub cni_conf_dir: Option<&'a Path>,
    pub cni_bin_dir: Option<&'a str>,
    pub pod_cidr: Option<&'a str>,
    pub cluster_dns: Option<&'a str>,
    pub cluster_domain: Option<&'a str>,
    pub resolv_conf: Option<&'a Path>,
}

/// Applies the flags; an error names the flag (`--pod-cidr: ...`).
pub fn apply_flags(n: &mut NetworkConfig, f: &Flags) -> Result<(), String> {
    let absolute = |flag: &str, p: &Path| {
        std::path::absolute(p).map_err(|e| format!("--{flag} {}: {e}", p.display()))
    };
    if let Some(d) = f.cni_conf_dir {
        n.cni_conf_dir = absolute("cni-conf-dir", d)?;
    }
    if let Some(d) = f.cni_bin_dir {
        let dirs = Dirs::One(d.to_string()).split();
        if dirs.is_empty() {
            return Err("--cni-bin-dir: names no directory".into());
        }
        n.cni_bin_dirs = dirs
            .iter()
            .map(|d| absolute("cni-bin-dir", Path::new(d)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(c) = f.pod_cidr {
        n.pod_cidr = parse_cidr(c).map_err(|m| format!("--pod-cidr: {m}"))?;
    }
    if let Some(list) = f.cluster_dns {
        n.cluster_dns = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("--cluster-dns: {s:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(d) = f.cluster_domain {
        n.cluster_domain = parse_domain(d).map_err(|m| format!("--cluster-domain: {m}"))?;
    }
    if let Some(r) = f.resolv_conf {
        n.resolv_conf = if r.as_os_str().is_empty() {
            None
        } else {
            Some(absolute("resolv-conf", r)?)
        };
    }
    Ok(())
}

/// Parses `address/prefix` (IPv4 or IPv6) and refuses host bits, which host-local would
/// otherwise silently drop; returns the normalised text.
pub fn parse_cidr(text: &str) -> Result<String, String> {
    let (addr, prefix) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a subnet such as {DEFAULT_POD_CIDR}"))?;
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?}: {addr:?} is not an IP address"))?;
    let prefix: u32 = prefix
        .parse()
        .map_err(|_| format!("{text:?}: {prefix:?} is not a prefix length"))?;
    // Room for the gateway and at least one pod.
    let (bits, max) = match ip {
        IpAddr::V4(_) => (32, 30),
        IpAddr::V6(_) => (128, 126),
    };
    if prefix > max {
        return Err(format!(
            "{text:?}: a /{prefix} leaves no room for a gateway and a pod (at most /{max})"
        ));
    }
    let value: u128 = match ip {
        IpAddr::V4(v) => u32::from(v).into(),
        IpAddr::V6(v) => v.into(),
    };
    let host_bits = bits - prefix;
    let host_mask = if host_bits == 0 {
        0
    } else {
        (1u128 << host_bits) - 1
    };
    if value & host_mask != 0 {
        let network = value & !host_mask;
        let net = match ip {
            IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(network as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(network)),
        };
        return Err(format!(
            "{text:?} has host bits set; did you mean {net}/{prefix}?"
        ));
    }
    Ok(format!("{ip}/{prefix}"))
}

/// A cluster domain is a DNS subdomain (`cluster.local`); a trailing dot is dropped.
fn parse_domain(text: &str) -> Result<String, String> {
    let d = text.trim().trim_end_matches('.');
    if d.is_empty() || crate::manifest::validate::is_dns1123_subdomain(d) {
        Ok(d.to_string())
    } else {
        Err(format!(
            "{text:?} is not a DNS domain such as cluster.local"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_checked_and_normalised() {
        assert_eq!(parse_cidr("10.77.0.0/24").unwrap(), "10.77.0.0/24");
        assert_eq!(parse_cidr("fd00:77::/64").unwrap(), "fd00:77::/64");
        assert!(parse_cidr("10.77.0.5/24")
            .unwrap_err()
            .contains("did you mean 10.77.0.0/24"));
        assert!(parse_cidr("10.77.0.0/31").unwrap_err().contains("no room"));
        assert!(parse_cidr("10.77.0.0").is_err());
        assert!(parse_cidr("ten/8").is_err());
    }

    #[test]
    fn the_kubelet_keys_are_read_from_either_kind() {
        let dir = std::env::temp_dir().join(format!("stl-netconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("kubelet.yaml");
        std::fs::write(
            &f,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\npodCIDR: 10.80.0.0/24\nresolvConf: \"\"\n",
        )
        .unwrap();
        let n = crate::config::load_file(&f).unwrap().network;
        assert_eq!(n.cluster_dns, vec!["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            (n.cluster_domain.as_str(), n.pod_cidr.as_str()),
            ("cluster.local", "10.80.0.0/24")
        );
        assert_eq!(n.resolv_conf, None);
        let f = dir.join("staticlet.yaml");
        std::fs::write(
            &f,
            "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncniConfDir: net.d\ncniBinDir: /a,/b\npodCIDR: 10.80.0.1/24\n",
        )
        .unwrap();
        let e = crate::config::load_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("podCIDR") && e.contains("did you mean 10.80.0.0/24"),
            "{e}"
        );
        std::fs::write(
            &f,
            "apiVersion: staticlet.dev/v1alpha1\nkind: StaticletConfiguration\ncniConfDir: net.d\ncniBinDir: [/a, /b]\n",
        )
        .unwrap();
        let n = crate::config::load_file(&f).unwrap().network;
        assert_eq!(n.cni_conf_dir, dir.join("net.d"), "relative to the file");
        assert_eq!(
            n.cni_bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_override_and_name_themselves() {
        let mut n = NetworkConfig::default();
        apply_flags(
            &mut n,
            &Flags {
                cni_bin_dir: Some("/a, /b"),
                cluster_dns: Some("10.96.0.10"),
                cluster_domain: Some("cluster.local."),
                resolv_conf: Some(Path::new("")),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            n.cni_bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(n.cluster_dns, vec!["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(n.cluster_domain, "cluster.local");
        assert_eq!(n.resolv_conf, None);
        let e = apply_flags(
            &mut n,
            &Flags {
                cluster_dns: Some("10.96.0.10,dns"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.starts_with("--cluster-dns: \"dns\""), "{e}");
    }
}
