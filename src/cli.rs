//! The command line: raw flags (argh) are parsed here and turned into a validated
//! [`Config`] in one place; each subcommand then hands over to the library.

use crate::config::{self, Config};
use argh::FromArgs;
use std::path::PathBuf;

/// staticlet runs Kubernetes static pods with crun, offline-first.
#[derive(FromArgs, Debug)]
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
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
    /// log debug lines
    #[argh(switch, short = 'v')]
    pub verbose: bool,
}

/// show what the running agent runs
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "get")]
pub struct GetCmd {
    /// what to show: pods
    #[argh(positional)]
    pub resource: String,
    /// output format: wide, json or yaml
    #[argh(option, short = 'o')]
    pub output: Option<String>,
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

/// manage the local image store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "images")]
pub struct ImagesCmd {
    #[argh(subcommand)]
    pub action: ImagesAction,
    /// configuration file (for the root dir)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ImagesAction {
    Import(ImagesImport),
    List(ImagesList),
    Rm(ImagesRm),
    Pull(ImagesPull),
}

/// pull an image from its registry into the store
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pull")]
pub struct ImagesPull {
    /// image reference, e.g. registry.example/ops/app:1.4 or busybox@sha256:...
    #[argh(positional)]
    pub reference: String,
    /// a Docker config.json with registry credentials (default /root/.docker/config.json)
    #[argh(option)]
    pub image_credentials: Option<PathBuf>,
}

/// import an OCI layout directory, an OCI archive or a docker archive
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import")]
pub struct ImagesImport {
    /// the layout directory or archive
    #[argh(positional)]
    pub path: PathBuf,
    /// name to store the image under (default: the name in the archive)
    #[argh(option)]
    pub name: Option<String>,
}

/// list stored images
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct ImagesList {}

/// remove a stored image
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
pub struct ImagesRm {
    /// image reference
    #[argh(positional)]
    pub reference: String,
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
    if let Some(p) = &cmd.pod_manifest_path {
        c.static_pod_path = Some(p.clone());
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
        c.manifest_url_ca_file = Some(p.clone());
    }
    if let Some(n) = &cmd.node_name {
        c.node_name = n.clone();
    }
    if let Some(d) = &cmd.root_dir {
        c.root_dir = d.clone();
    }
    if let Some(d) = &cmd.pod_logs_dir {
        c.pod_logs_dir = d.clone();
    }
    if let Some(r) = &cmd.runtime {
        c.runtime_path = r.clone();
    }
    if let Some(a) = &cmd.status_address {
        c.status_address =
            config::parse_status_address(a).map_err(|m| usage("status-address", m))?;
    }
    if let Some(k) = &cmd.kubeconfig {
        c.kubeconfig = Some(k.clone());
    }
    if let Some(k) = &cmd.kubeconfig_context {
        c.kubeconfig_context = Some(k.clone());
    }
    if let Some(l) = &cmd.node_labels {
        config::parse_labels_flag(l, &mut c.node_labels).map_err(|m| usage("node-labels", m))?;
    }
    if let Some(p) = &cmd.image_credentials {
        c.image_credentials = Some(p.clone());
    }
    if !crate::manifest::validate::is_dns1123_subdomain(&c.node_name) {
        return Err(Failure::Usage(format!(
            "node name {:?} must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'); set --node-name",
            c.node_name
        )));
    }
    // The manifest path is part of every pod's UID: make it absolute, so starting the agent
    // from another directory does not replace every pod.
    if let Some(p) = c.static_pod_path.take() {
        c.static_pod_path =
            Some(std::path::absolute(&p).map_err(|e| usage("pod-manifest-path", e.to_string()))?);
    }
    if c.static_pod_path.is_none() && c.static_pod_url.is_none() {
        return Err(Failure::Usage(
            "no pod source: give --pod-manifest-path (or staticPodPath) and/or --manifest-url (or staticPodURL)".into(),
        ));
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
/// with exit code 2 for usage errors.
pub fn parse_args() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "staticlet".into());
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    match Cli::from_args(&[&cmd], &rest) {
        Ok(cli) => cli,
        Err(early) => match early.status {
            Ok(()) => {
                println!("{}", early.output);
                std::process::exit(0)
            }
            Err(()) => {
                eprintln!("{}Run {cmd} --help for more information.", early.output);
                std::process::exit(2)
            }
        },
    }
}
