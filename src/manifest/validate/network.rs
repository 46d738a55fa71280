//! The pod network's fields, checked as the API server checks them (ValidatePodSpec's DNS,
//! hostAliases and host port rules), with its messages.

use super::names::is_dns1123_subdomain;
use super::{unsupported, Errors};
use crate::manifest::pod::PodSpec;
use std::collections::BTreeSet;
use std::net::IpAddr;

const POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];

pub(super) fn validate_network(s: &PodSpec, e: &mut Errors) {
    if let Some(p) = s.dns_policy.as_deref().filter(|p| !POLICIES.contains(p)) {
        e.add("spec.dnsPolicy", unsupported(p, POLICIES));
    }
    if s.dns_policy.as_deref() == Some("None") && s.dns_config.is_none() {
        e.add(
            "spec.dnsConfig",
            "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        );
    }
    if let Some(d) = &s.dns_config {
        if d.nameservers.len() > 3 {
            e.add(
                "spec.dnsConfig.nameservers",
                format!(
                    "Invalid value: {:?}: must not have more than 3 nameservers",
                    d.nameservers
                ),
            );
        }
        for (i, ns) in d.nameservers.iter().enumerate() {
            if ns.parse::<IpAddr>().is_err() {
                e.add(
                    format!("spec.dnsConfig.nameservers[{i}]"),
                    format!("Invalid value: {ns:?}: must be valid IP address"),
                );
            }
        }
        if d.searches.len() > 32 {
            e.add(
                "spec.dnsConfig.searches",
                format!(
                    "Invalid value: {} search paths: must not have more than 32 search paths",
                    d.searches.len()
                ),
            );
        }
        for (i, s) in d.searches.iter().enumerate() {
            // A trailing dot is allowed (an absolute name), as the API server allows it.
            if !is_dns1123_subdomain(s.strip_suffix('.').unwrap_or(s)) {
                e.add(
                    format!("spec.dnsConfig.searches[{i}]"),
                    format!("Invalid value: {s:?}: must be a DNS-1123 subdomain"),
                );
            }
        }
        for (i, o) in d.options.iter().enumerate() {
            if o.name.is_empty() {
                e.add(
                    format!("spec.dnsConfig.options[{i}].name"),
                    "Required value",
                );
            }
        }
    }
    for (i, a) in s.host_aliases.iter().enumerate() {
        if a.ip.parse::<IpAddr>().is_err() {
            e.add(
                format!("spec.hostAliases[{i}].ip"),
                format!("Invalid value: {:?}: must be valid IP address", a.ip),
            );
        }
    }
    validate_host_ports(s, e);
}

/// hostPort: unique per protocol and address in the pod, equal to containerPort for a
/// hostNetwork pod (the port is the container's own), hostIP an address.
fn validate_host_ports(s: &PodSpec, e: &mut Errors) {
    let mut seen = BTreeSet::new();
    for (kind, list) in [
        ("initContainers", &s.init_containers),
        ("containers", &s.containers),
    ] {
        for (ci, c) in list.iter().enumerate() {
            for (pi, p) in c.ports.iter().enumerate() {
                let path = format!("spec.{kind}[{ci}].ports[{pi}]");
                let host_ip = p.host_ip.as_deref().unwrap_or("");
                if !host_ip.is_empty() && host_ip.parse::<IpAddr>().is_err() {
                    e.add(
                        format!("{path}.hostIP"),
                        format!("Invalid value: {host_ip:?}: must be a valid IP address"),
                    );
                }
                let Some(h) = p.host_port.filter(|h| *h != 0) else {
                    continue;
                };
                if s.host_network && h != p.container_port {
                    e.add(
                        format!("{path}.hostPort"),
                        format!("Invalid value: {h}: must match `containerPort` when `hostNetwork` is true"),
                    );
                }
                let proto = p.protocol.as_deref().unwrap_or("TCP");
                if !seen.insert(format!("{proto}/{host_ip}/{h}")) {
                    e.add(
                        format!("{path}.hostPort"),
                        format!("Duplicate value: \"{proto}/{host_ip}/{h}\""),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{self, Source};

    fn errors(spec: &str, ports: &str) -> Vec<String> {
        let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}  containers:\n  - name: a\n    image: busybox\n{ports}");
        match manifest::load(yaml.as_bytes(), &Source::File("/m/p.yaml".into()), "n") {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect(),
        }
    }

    #[test]
    fn dns_fields_are_checked_as_the_api_server_does() {
        assert!(errors("  dnsPolicy: ClusterFirst\n  dnsConfig: {nameservers: [1.1.1.1], options: [{name: ndots, value: \"2\"}]}\n", "").is_empty());
        assert_eq!(errors("  dnsPolicy: Cluster\n", ""), vec!["spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""]);
        assert_eq!(
            errors("  dnsPolicy: None\n", ""),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"
            ]
        );
        let e = errors("  dnsConfig: {nameservers: [1.1.1.1, 2.2.2.2, 3.3.3.3, dns], searches: [-bad], options: [{value: x}]}\n  hostAliases: [{ip: nowhere, hostnames: [a]}]\n", "");
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e[0].starts_with("spec.dnsConfig.nameservers: Invalid value"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("spec.dnsConfig.nameservers[3]: Invalid value: \"dns\""),
            "{e:?}"
        );
        assert!(e[2].starts_with("spec.dnsConfig.searches[0]"), "{e:?}");
        assert_eq!(e[3], "spec.dnsConfig.options[0].name: Required value");
        assert!(e[4].starts_with("spec.hostAliases[0].ip"), "{e:?}");
    }

    #[test]
    fn host_ports_are_unique_and_match_on_the_host_network() {
        let ports = "    ports:\n    - {containerPort: 80, hostPort: 8080}\n    - {containerPort: 81, hostPort: 8080}\n    - {containerPort: 82, hostPort: 8080, protocol: UDP, hostIP: 127.0.0.1}\n";
        assert_eq!(
            errors("", ports),
            vec!["spec.containers[0].ports[1].hostPort: Duplicate value: \"TCP//8080\""]
        );
        let e = errors(
            "  hostNetwork: true\n",
            "    ports: [{containerPort: 80, hostPort: 8080}]\n",
        );
        assert_eq!(e, vec!["spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"]);
        assert_eq!(
            errors(
                "",
                "    ports: [{containerPort: 80, hostPort: 8080, hostIP: here}]\n"
            )
            .len(),
            1
        );
    }
}
