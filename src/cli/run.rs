//! `staticlet run`: the agent's flags, and the configuration they make with the file.

use super::{base_config, path_flag, runtime_flag, Failure};
use crate::config::{self, Config};
use argh::FromArgs;
use std::path::PathBuf;

/// run the agent: start the static pods and keep them running
#[derive(FromArgs, Debug, Default)]
#[argh(subcommand, name = "run")]
pub struct RunCmd {
    /// a StaticletConfiguration or KubeletConfiguration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// directory (or single file) of Pod manifests
    #[argh(option)]
    pub pod_manifest_path: Option<PathBuf>,
    /// a URL serving a Pod or a PodList
    #[argh(option)]
    pub manifest_url: Option<String>,
    /// headers for the manifest URL, 'name:value,name:value' (repeatable)
    #[argh(option)]
    pub manifest_url_header: Vec<String>,
    /// a CA bundle (PEM) to trust for the manifest URL
    #[argh(option)]
    pub manifest_url_ca_file: Option<PathBuf>,
    /// a minisign public key file; manifests must then be signed by a pinned key (repeatable)
    #[argh(option)]
    pub manifest_public_key: Vec<PathBuf>,
    /// node name (default: the host name, lower-cased)
    #[argh(option)]
    pub node_name: Option<String>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
    /// container log directory (default /var/log/pods)
    #[argh(option)]
    pub pod_logs_dir: Option<PathBuf>,
    /// the OCI runtime binary (default: crun on PATH)
    #[argh(option)]
    pub runtime: Option<PathBuf>,
    /// status endpoint address (default 127.0.0.1:10255; none turns it off)
    #[argh(option)]
    pub status_address: Option<String>,
    /// kubeconfig for mirror pods (optional)
    #[argh(option)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use instead of the current one
    #[argh(option)]
    pub kubeconfig_context: Option<String>,
    /// labels for the Node object, 'key=value,key=value'
    #[argh(option)]
    pub node_labels: Option<String>,
    /// a Docker config.json with registry credentials
    #[argh(option)]
    pub image_credentials: Option<PathBuf>,
    /// the cgroup pods are created under (default /staticlet for the default root dir,
    /// /staticlet-<hash of the root dir> otherwise)
    #[argh(option)]
    pub cgroup_root: Option<String>,
    /// the CNI configuration directory (default /etc/cni/net.d)
    #[argh(option)]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directories, comma-separated (default /opt/cni/bin,/usr/lib/cni)
    #[argh(option)]
    pub cni_bin_dir: Option<String>,
    /// the default network's subnet, used when staticlet writes it (default 10.77.0.0/24)
    #[argh(option)]
    pub pod_cidr: Option<String>,
    /// cluster DNS server IPs for dnsPolicy ClusterFirst, comma-separated
    #[argh(option)]
    pub cluster_dns: Option<String>,
    /// the cluster domain for dnsPolicy ClusterFirst search paths (e.g. cluster.local)
    #[argh(option)]
    pub cluster_domain: Option<String>,
    /// the resolver configuration pods with dnsPolicy Default get (default /etc/resolv.conf)
    #[argh(option)]
    pub resolv_conf: Option<PathBuf>,
    /// the Node's InternalIP and the pods' hostIP (default: the host's first address)
    #[argh(option)]
    pub node_ip: Option<String>,
    /// the kubelet API's port, with a kubeconfig (default 10250; 0 turns it off)
    #[argh(option)]
    pub port: Option<u16>,
    /// the kubelet API's address (default 0.0.0.0)
    #[argh(option)]
    pub address: Option<String>,
    /// the kubelet API's serving certificate (PEM; default: a self-signed one)
    #[argh(option)]
    pub tls_cert_file: Option<PathBuf>,
    /// the kubelet API's serving key (PEM)
    #[argh(option)]
    pub tls_private_key_file: Option<PathBuf>,
    /// clients of the kubelet API with a certificate signed by this CA are authenticated
    #[argh(option)]
    pub client_ca_file: Option<PathBuf>,
    /// the kubelet API's authorization: Webhook (default) or AlwaysAllow
    #[argh(option)]
    pub authorization_mode: Option<String>,
    /// log debug lines
    #[argh(switch, short = 'v')]
    pub verbose: bool,
}

/// The configuration for `run`: file first, flags on top.
pub fn run_config(cmd: &RunCmd) -> Result<Config, Failure> {
    let mut c = base_config(cmd.config.as_ref())?;
    let usage = |flag: &str, m: String| Failure::Usage(format!("--{flag}: {m}"));
    // Relative paths are made absolute now: crun, the monitors and the pod UIDs (which
    // include the manifest path) must not depend on the directory the agent was started in.
    if let Some(p) = &cmd.pod_manifest_path {
        c.static_pod_path = Some(path_flag("pod-manifest-path", p)?);
    }
    if let Some(u) = &cmd.manifest_url {
        c.static_pod_url = Some(u.clone());
    }
    if !cmd.manifest_url_header.is_empty() {
        c.static_pod_url_header.clear();
        for h in &cmd.manifest_url_header {
            config::parse_header_flag(h, &mut c.static_pod_url_header)
                .map_err(|m| usage("manifest-url-header", m))?;
        }
    }
    if let Some(p) = &cmd.manifest_url_ca_file {
        c.manifest_url_ca_file = Some(path_flag("manifest-url-ca-file", p)?);
    }
    if !cmd.manifest_public_key.is_empty() {
        c.manifest_public_keys = cmd
            .manifest_public_key
            .iter()
            .map(|p| path_flag("manifest-public-key", p))
            .collect::<Result<_, _>>()?;
    }
    if let Some(n) = &cmd.node_name {
        c.node_name = n.clone();
    }
    if let Some(d) = &cmd.root_dir {
        c.root_dir = path_flag("root-dir", d)?;
    }
    if let Some(d) = &cmd.pod_logs_dir {
        c.pod_logs_dir = path_flag("pod-logs-dir", d)?;
    }
    if let Some(r) = &cmd.runtime {
        c.runtime_path = runtime_flag(r)?;
    }
    if let Some(a) = &cmd.status_address {
        c.status_address =
            config::parse_status_address(a).map_err(|m| usage("status-address", m))?;
    }
    if let Some(k) = &cmd.kubeconfig {
        c.kubeconfig = Some(path_flag("kubeconfig", k)?);
    }
    if let Some(k) = &cmd.kubeconfig_context {
        c.kubeconfig_context = Some(k.clone());
    }
    if let Some(l) = &cmd.node_labels {
        config::parse_labels_flag(l, &mut c.node_labels).map_err(|m| usage("node-labels", m))?;
    }
    if let Some(p) = &cmd.image_credentials {
        c.image_credentials = Some(path_flag("image-credentials", p)?);
    }
    if let Some(r) = &cmd.cgroup_root {
        c.cgroup_root = Some(config::parse_cgroup_root(r).map_err(|m| usage("cgroup-root", m))?);
    }
    config::network::apply_flags(
        &mut c.network,
        &config::network::Flags {
            cni_conf_dir: cmd.cni_conf_dir.as_deref(),
            cni_bin_dir: cmd.cni_bin_dir.as_deref(),
            pod_cidr: cmd.pod_cidr.as_deref(),
            cluster_dns: cmd.cluster_dns.as_deref(),
            cluster_domain: cmd.cluster_domain.as_deref(),
            resolv_conf: cmd.resolv_conf.as_deref(),
        },
    )
    .map_err(Failure::Usage)?;
    if let Some(ip) = &cmd.node_ip {
        c.node_ip = Some(config::parse_node_ip(ip).map_err(|m| usage("node-ip", m))?);
    }
    let k = &mut c.kubelet_api;
    if let Some(p) = cmd.port {
        k.port = p;
    }
    if let Some(a) = &cmd.address {
        k.address = config::parse_address(a).map_err(|m| usage("address", m))?;
    }
    if let Some(p) = &cmd.tls_cert_file {
        k.tls_cert_file = Some(path_flag("tls-cert-file", p)?);
    }
    if let Some(p) = &cmd.tls_private_key_file {
        k.tls_private_key_file = Some(path_flag("tls-private-key-file", p)?);
    }
    if k.tls_cert_file.is_some() != k.tls_private_key_file.is_some() {
        return Err(Failure::Usage(
            "--tls-cert-file and --tls-private-key-file go together (tlsCertFile, tlsPrivateKeyFile)".into(),
        ));
    }
    if let Some(p) = &cmd.client_ca_file {
        k.client_ca_file = Some(path_flag("client-ca-file", p)?);
    }
    if let Some(m) = &cmd.authorization_mode {
        k.authz_mode = config::parse_authz_mode(m).map_err(|e| usage("authorization-mode", e))?;
    }
    if !crate::manifest::validate::is_dns1123_subdomain(&c.node_name) {
        return Err(Failure::Usage(format!(
            "node name {:?} must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'); set --node-name",
            c.node_name
        )));
    }
    if c.static_pod_path.is_none() && c.static_pod_url.is_none() {
        return Err(Failure::Usage(
            "no pod source: give --pod-manifest-path (or staticPodPath) and/or --manifest-url (or staticPodURL)".into(),
        ));
    }
    Ok(c)
}
