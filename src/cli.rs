//! The command line: raw flags (argh) are parsed here and turned into a validated
//! [`Config`] in one place; each subcommand then hands over to the library.

mod images;

use crate::config::{self, Config};
use argh::FromArgs;
use std::path::PathBuf;

pub use images::{ImagesAction, ImagesCmd, ImagesImport, ImagesList, ImagesPull, ImagesRm};

/// staticlet runs Kubernetes static pods with crun, offline-first.
#[derive(FromArgs, Debug)]
pub struct Cli {
    /// print the version
    #[argh(switch)]
    pub version: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Run(Box<RunCmd>),
    Get(GetCmd),
    Logs(LogsCmd),
    Validate(ValidateCmd),
    Images(ImagesCmd),
    Doctor(DoctorCmd),
    Drain(DrainCmd),
    Version(VersionCmd),
    Monitor(MonitorCmd),
}

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
    /// log debug lines
    #[argh(switch, short = 'v')]
    pub verbose: bool,
}

/// show what the running agent runs, as kubectl does: get pods [NAME...]
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    /// what to show: pods (or pod/NAME)
    #[argh(positional)]
    pub resource: String,
    /// pod names, with or without the node suffix (default: all)
    #[argh(positional)]
    pub names: Vec<String>,
    /// output format: wide, name, json or yaml
    #[argh(option, short = 'o')]
    pub output: Option<String>,
    /// only pods of this namespace (default: all)
    #[argh(option, short = 'n')]
    pub namespace: Option<String>,
    /// all namespaces (the default; accepted for kubectl habits)
    #[argh(switch, short = 'A')]
    pub all_namespaces: bool,
    /// configuration file (for the status address)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the agent's status endpoint (default 127.0.0.1:10255)
    #[argh(option)]
    pub status_address: Option<String>,
}

/// print a container's log
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "logs")]
pub struct LogsCmd {
    /// pod name, with or without the node suffix
    #[argh(positional)]
    pub pod: String,
    /// container (default: the only one)
    #[argh(option, short = 'c')]
    pub container: Option<String>,
    /// namespace (default: any, when the name is unique)
    #[argh(option, short = 'n')]
    pub namespace: Option<String>,
    /// keep printing new lines
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// the log of the previous instance of the container
    #[argh(switch, short = 'p')]
    pub previous: bool,
    /// configuration file (for the status address)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the agent's status endpoint (default 127.0.0.1:10255)
    #[argh(option)]
    pub status_address: Option<String>,
}

/// check manifests offline exactly as `run` reads them
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "validate")]
pub struct ValidateCmd {
    /// manifest files or directories
    #[argh(positional)]
    pub files: Vec<PathBuf>,
    /// configuration file (for the node name)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// node name used for the name suffix (default: the host name)
    #[argh(option)]
    pub node_name: Option<String>,
    /// refuse fields a v1 Pod does not have (as kubectl --validate=strict); without it they
    /// are warnings
    #[argh(switch)]
    pub strict: bool,
}

/// check this host for what staticlet needs, and say what to fix
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "doctor")]
pub struct DoctorCmd {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
    /// the OCI runtime binary (default: crun on PATH)
    #[argh(option)]
    pub runtime: Option<PathBuf>,
    /// the CNI configuration directory (default /etc/cni/net.d)
    #[argh(option)]
    pub cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directories, comma-separated (default /opt/cni/bin,/usr/lib/cni)
    #[argh(option)]
    pub cni_bin_dir: Option<String>,
}

/// stop every pod of this root dir and remove what they used (the agent must be stopped)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "drain")]
pub struct DrainCmd {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
    /// the cgroup the agent created pods under, if it was given --cgroup-root
    #[argh(option)]
    pub cgroup_root: Option<String>,
}

/// print the version
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "version")]
pub struct VersionCmd {}

/// (internal) per-container monitor, started by the agent
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "monitor")]
pub struct MonitorCmd {
    /// the container's state directory
    #[argh(positional)]
    pub dir: PathBuf,
}

/// A usage or configuration problem (exit code 2), as opposed to a failure (exit code 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Failed(String),
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// Loads `--config` when given, or the defaults.
pub fn base_config(path: Option<&PathBuf>) -> Result<Config, Failure> {
    match path {
        Some(p) => Ok(config::load_file(p)?),
        None => Ok(Config::default()),
    }
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

/// A path flag, made absolute against the working directory.
pub fn path_flag(flag: &str, p: &std::path::Path) -> Result<PathBuf, Failure> {
    if p.as_os_str().is_empty() {
        return Err(Failure::Usage(format!("--{flag}: empty path")));
    }
    std::path::absolute(p).map_err(|e| Failure::Usage(format!("--{flag} {}: {e}", p.display())))
}

/// `--runtime`: a bare name (`crun`) is looked up on PATH, anything with a slash is a path.
pub fn runtime_flag(p: &std::path::Path) -> Result<PathBuf, Failure> {
    if p.components().count() == 1 && p.is_relative() {
        return Ok(p.to_path_buf());
    }
    path_flag("runtime", p)
}

/// The configuration of a command that works on a root dir (`images`, `doctor`):
/// `--config` first, then `--root-dir` on top, made absolute.
pub fn root_dir_config(
    config: Option<&PathBuf>,
    root_dir: Option<&std::path::Path>,
) -> Result<Config, Failure> {
    let mut c = base_config(config)?;
    if let Some(d) = root_dir {
        c.root_dir = path_flag("root-dir", d)?;
    }
    Ok(c)
}

/// The status endpoint a client command talks to: flag, then config file, then default.
pub fn client_address(
    config: Option<&PathBuf>,
    flag: Option<&String>,
) -> Result<std::net::SocketAddr, Failure> {
    let c = base_config(config)?;
    let addr = match flag {
        Some(a) => config::parse_status_address(a)
            .map_err(|m| Failure::Usage(format!("--status-address: {m}")))?,
        None => c.status_address,
    };
    addr.ok_or_else(|| {
        Failure::Usage(
            "the status endpoint is turned off (statusAddress: none); nothing to talk to".into(),
        )
    })
}

/// Parses the process arguments; prints help or usage errors and exits as argh would, but
/// with exit code 2 for usage errors. `-h` is taken as `--help` and `--version` is answered
/// here, as most command-line tools do.
pub fn parse_args() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "staticlet".into());
    let rest: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| if a == "-h" { "--help" } else { a.as_str() })
        .collect();
    let early = match Cli::from_args(&[&cmd], &rest) {
        Ok(cli) if cli.version || cli.command.is_some() => return cli,
        Ok(_) => {
            // No command: show what there is, as a usage error.
            if let Err(help) = Cli::from_args(&[&cmd], &["--help"]) {
                eprintln!("{}", help.output.trim_end());
            }
            std::process::exit(2)
        }
        Err(early) => early,
    };
    if early.status.is_ok() {
        println!("{}", early.output);
        std::process::exit(0)
    }
    eprintln!("{}", early.output.trim_end());
    eprintln!("Run {cmd} --help for more information.");
    std::process::exit(2)
}
