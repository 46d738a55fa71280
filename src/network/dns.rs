//! A pod's `/etc/resolv.conf` and `/etc/hosts`, composed as the kubelet composes them
//! (pkg/kubelet/network/dns and kubelet_pods.go): the `dnsPolicy` picks the base (the host's
//! resolver for `Default`, the cluster DNS for `ClusterFirst`, nothing for `None`), the
//! pod's `dnsConfig` is merged over it, and the result is cut to the resolver's limits. Pure:
//! the host's resolver file is read by the caller.

use crate::config::NetworkConfig;
use crate::manifest::StaticPod;
use std::fs;
use std::net::IpAddr;

/// The kubelet's limits (validation.MaxDNSNameservers, MaxDNSSearchPathsExpanded,
/// MaxDNSSearchListCharsExpanded) and glibc's limit on one search domain.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
const MAX_DOMAIN: usize = 253;

/// A resolver configuration: the three lines the kubelet hands the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolver {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl Resolver {
    /// Parses a resolv.conf as the kubelet's `parseResolvConf`: `nameserver` lines add up,
    /// the last `search` line wins (a trailing dot dropped, `.` skipped), `options` add up
    /// with later values of the same option replacing earlier ones.
    pub fn parse(text: &str) -> Resolver {
        let mut r = Resolver::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => r.nameservers.extend(fields.next().map(str::to_string)),
                Some("search") => {
                    r.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_string())
                        .collect();
                }
                Some("options") => {
                    r.options = merge_options(&r.options, fields.map(str::to_string))
                }
                _ => {}
            }
        }
        r
    }

    /// The file, as containerd writes it from the kubelet's DNS config.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            s.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        s
    }
}

/// Merges options by name, later ones replacing earlier ones in place and new ones appended
/// (the kubelet merges through a Go map, whose order is random; this keeps the order written).
fn merge_options(base: &[String], more: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    let name = |o: &str| o.split(':').next().unwrap_or("").to_string();
    for o in more {
        match out.iter_mut().find(|x| name(x) == name(&o)) {
            Some(slot) => *slot = o,
            None => out.push(o),
        }
    }
    out
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in list {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The pod's resolver configuration. `host` is the parsed `resolvConf` file, or `None` when
/// `resolvConf` is empty (the kubelet then points `Default` pods at 127.0.0.1).
pub fn pod_resolver(pod: &StaticPod, net: &NetworkConfig, host: Option<Resolver>) -> Resolver {
    let spec = &pod.pod.spec;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => false,
        "ClusterFirstWithHostNet" => true,
        "Default" => false,
        // ClusterFirst: a hostNetwork pod falls back to Default, as in the kubelet.
        _ => !spec.host_network,
    };
    let mut r = if policy == "None" {
        Resolver::default()
    } else if cluster && !net.cluster_dns.is_empty() {
        let host_searches = host.map(|h| h.searches).unwrap_or_default();
        let mut searches = Vec::new();
        if !net.cluster_domain.is_empty() {
            let d = &net.cluster_domain;
            searches = vec![
                format!("{}.svc.{d}", pod.namespace()),
                format!("svc.{d}"),
                d.clone(),
            ];
        }
        searches.extend(host_searches);
        Resolver {
            nameservers: net.cluster_dns.iter().map(IpAddr::to_string).collect(),
            searches: dedup(searches),
            options: vec!["ndots:5".into()],
        }
    } else {
        // Default, or ClusterFirst without clusterDNS: the kubelet's fallback to Default.
        host.unwrap_or_else(|| Resolver {
            nameservers: vec!["127.0.0.1".into()],
            searches: vec![".".into()],
            options: vec![],
        })
    };
    if let Some(d) = &spec.dns_config {
        r.nameservers = dedup(
            r.nameservers
                .into_iter()
                .chain(d.nameservers.iter().cloned())
                .collect(),
        );
        r.searches = dedup(
            r.searches
                .into_iter()
                .chain(d.searches.iter().cloned())
                .collect(),
        );
        let pod_options = d.options.iter().map(|o| match &o.value {
            Some(v) => format!("{}:{v}", o.name),
            None => o.name.clone(),
        });
        r.options = merge_options(&r.options, pod_options);
    }
    fit_limits(r)
}

/// The kubelet's `formDNSConfigFitsLimits`: at most 3 nameservers, 32 search domains of at
/// most 253 characters each and 2048 in all (the last ones dropped).
fn fit_limits(mut r: Resolver) -> Resolver {
    r.nameservers.truncate(MAX_NAMESERVERS);
    r.searches.truncate(MAX_SEARCHES);
    r.searches.retain(|s| s.len() <= MAX_DOMAIN);
    while r.searches.join(" ").len() > MAX_SEARCH_CHARS {
        r.searches.pop();
    }
    r
}

/// Whether the kubelet would warn that ClusterFirst fell back to Default (no clusterDNS).
pub fn falls_back_to_default(pod: &StaticPod, net: &NetworkConfig) -> bool {
    let spec = &pod.pod.spec;
    net.cluster_dns.is_empty()
        && match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
            "ClusterFirst" => !spec.host_network,
            "ClusterFirstWithHostNet" => true,
            _ => false,
        }
}

/// The kubelet's managed hosts file for a pod with its own network: localhost entries, the
/// pod's IPs with its hostname (and FQDN when it has a `subdomain`), then `hostAliases`.
pub fn hosts_file(pod: &StaticPod, hostname: &str, ips: &[IpAddr], net: &NetworkConfig) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file (staticlet).\n");
    // Without an address the name still has to resolve, to loopback as before networking.
    if ips.is_empty() {
        s.push_str(&format!("127.0.0.1\tlocalhost {hostname}\n"));
    } else {
        s.push_str("127.0.0.1\tlocalhost\n");
    }
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
    let domain = match (&pod.pod.spec.subdomain, net.cluster_domain.as_str()) {
        (Some(sub), d) if !sub.is_empty() && !d.is_empty() => {
            Some(format!("{sub}.{}.svc.{d}", pod.namespace()))
        }
        _ => None,
    };
    for ip in ips {
        match &domain {
            Some(d) => s.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    s.push_str(&host_aliases(pod));
    s
}

/// The `hostAliases` block the kubelet appends to a hosts file.
pub fn host_aliases(pod: &StaticPod) -> String {
    let aliases = &pod.pod.spec.host_aliases;
    if aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        s.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
    s
}

/// The hosts file of a hostNetwork pod: the node's, plus the pod's hostAliases (kubelet).
pub fn node_hosts_file(pod: &StaticPod) -> String {
    let mut s = fs::read_to_string("/etc/hosts").unwrap_or_default();
    s.push_str(&host_aliases(pod));
    s
}

/// The pod's resolv.conf: [`pod_resolver`] over the host's `resolvConf` file.
pub fn resolv_conf(pod: &StaticPod, net: &NetworkConfig) -> String {
    let host = net
        .resolv_conf
        .as_ref()
        .map(|p| Resolver::parse(&fs::read_to_string(p).unwrap_or_default()));
    if falls_back_to_default(pod, net) && pod.pod.spec.dns_policy.is_some() {
        log::debug!(
            "{}: no clusterDNS is configured; dnsPolicy {} falls back to Default, as the kubelet does",
            pod.full_name(),
            pod.pod.spec.dns_policy.as_deref().unwrap_or_default()
        );
    }
    pod_resolver(pod, net, host).render()
}

#[cfg(test)]
mod tests;
