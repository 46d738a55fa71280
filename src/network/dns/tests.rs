use super::*;
use crate::manifest::{self, Source};

fn pod(spec: &str) -> StaticPod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: shop}}\nspec:\n{spec}  containers:\n  - {{name: a, image: busybox}}\n"
    );
    manifest::load(yaml.as_bytes(), &Source::File("/m/web.yaml".into()), "gw").unwrap()
}

fn cluster() -> NetworkConfig {
    NetworkConfig {
        cluster_dns: vec!["10.96.0.10".parse().unwrap()],
        cluster_domain: "cluster.local".into(),
        ..Default::default()
    }
}

const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch lan. example.com\noptions ndots:2 timeout:1\noptions attempts:3\n";

fn host() -> Option<Resolver> {
    Some(Resolver::parse(HOST))
}

#[test]
fn the_host_file_is_read_as_the_kubelet_reads_it() {
    let r = Resolver::parse(HOST);
    assert_eq!(r.nameservers, vec!["192.0.2.53", "192.0.2.54"]);
    assert_eq!(r.searches, vec!["lan", "example.com"]);
    assert_eq!(r.options, vec!["ndots:2", "timeout:1", "attempts:3"]);
    assert_eq!(
        r.render(),
        "search lan example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions ndots:2 timeout:1 attempts:3\n"
    );
}

#[test]
fn cluster_first_uses_the_cluster_dns_and_search_paths() {
    let r = pod_resolver(&pod(""), &cluster(), host());
    assert_eq!(r.nameservers, vec!["10.96.0.10"]);
    assert_eq!(
        r.searches,
        vec![
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "lan",
            "example.com"
        ]
    );
    assert_eq!(r.options, vec!["ndots:5"]);
}

#[test]
fn cluster_first_without_cluster_dns_falls_back_to_default() {
    let p = pod("");
    let net = NetworkConfig::default();
    assert!(falls_back_to_default(&p, &net));
    assert_eq!(pod_resolver(&p, &net, host()), Resolver::parse(HOST));
}

#[test]
fn host_network_pods_use_the_host_unless_cluster_first_with_host_net() {
    let r = pod_resolver(&pod("  hostNetwork: true\n"), &cluster(), host());
    assert_eq!(r, Resolver::parse(HOST));
    let r = pod_resolver(
        &pod("  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n"),
        &cluster(),
        host(),
    );
    assert_eq!(r.nameservers, vec!["10.96.0.10"]);
}

#[test]
fn none_takes_exactly_the_dns_config() {
    let spec = "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [1.1.1.1]\n    searches: [a.example]\n    options:\n    - {name: ndots, value: \"1\"}\n    - {name: edns0}\n";
    let r = pod_resolver(&pod(spec), &cluster(), host());
    assert_eq!(
        r.render(),
        "search a.example\nnameserver 1.1.1.1\noptions ndots:1 edns0\n"
    );
    // An empty dnsConfig: an empty file, as the kubelet gives.
    let empty = pod("  dnsPolicy: None\n  dnsConfig: {}\n");
    assert_eq!(pod_resolver(&empty, &cluster(), host()).render(), "");
}

#[test]
fn dns_config_is_merged_over_the_policy() {
    let spec = "  dnsPolicy: Default\n  dnsConfig:\n    nameservers: [192.0.2.54, 192.0.2.55, 192.0.2.56]\n    searches: [example.com, b.example]\n    options:\n    - {name: ndots, value: \"3\"}\n    - {name: single-request}\n";
    let r = pod_resolver(&pod(spec), &NetworkConfig::default(), host());
    // Duplicates merged; at most three nameservers (the kubelet's limit).
    assert_eq!(
        r.nameservers,
        vec!["192.0.2.53", "192.0.2.54", "192.0.2.55"]
    );
    assert_eq!(r.searches, vec!["lan", "example.com", "b.example"]);
    // A pod option replaces the host's of the same name.
    assert_eq!(
        r.options,
        vec!["ndots:3", "timeout:1", "attempts:3", "single-request"]
    );
}

#[test]
fn no_host_resolver_means_localhost() {
    let r = pod_resolver(
        &pod("  dnsPolicy: Default\n"),
        &NetworkConfig::default(),
        None,
    );
    assert_eq!(r.render(), "search .\nnameserver 127.0.0.1\n");
}

#[test]
fn search_paths_are_cut_to_the_limits() {
    // More than validation lets through, as the host's resolv.conf and the cluster's search
    // paths can add up to.
    let mut p = pod("  dnsPolicy: None\n  dnsConfig: {}\n");
    let mut searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
    searches.insert(0, "x".repeat(300));
    p.pod.spec.dns_config = Some(crate::manifest::pod::DnsConfig {
        searches,
        ..Default::default()
    });
    let r = pod_resolver(&p, &NetworkConfig::default(), None);
    // Cut to 32 first, then the overlong one dropped: the kubelet's order.
    assert_eq!(r.searches.len(), 31);
    assert_eq!(r.searches[0], "d0.example");
    assert!(r.searches.iter().all(|s| s.len() <= 253));
}

#[test]
fn the_hosts_file_names_the_pod_ip_and_the_aliases() {
    let spec =
        "  subdomain: db\n  hostAliases:\n  - {ip: 10.1.2.3, hostnames: [foo.local, bar.local]}\n";
    let ips = ["10.77.0.5".parse().unwrap()];
    let h = hosts_file(&pod(spec), "web-gw", &ips, &cluster());
    assert!(h.starts_with("# Kubernetes-managed hosts file"), "{h}");
    assert!(h.contains("127.0.0.1\tlocalhost\n"), "{h}");
    assert!(
        h.contains("10.77.0.5\tweb-gw.db.shop.svc.cluster.local\tweb-gw\n"),
        "{h}"
    );
    assert!(
        h.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"),
        "{h}"
    );
    // Without an address (no network), the name resolves to loopback.
    let h = hosts_file(&pod(""), "web-gw", &[], &NetworkConfig::default());
    assert!(h.contains("127.0.0.1\tlocalhost web-gw\n"), "{h}");
}
