//! The command line: raw flags (argh) are parsed here and turned into a validated
//! [`Config`] in one place; each subcommand then hands over to the library.

mod images;
mod pod;
mod run;

use crate::config::{self, Config};
use argh::FromArgs;
use std::path::PathBuf;

pub use images::{ImagesAction, ImagesCmd, ImagesImport, ImagesList, ImagesPull, ImagesRm};
pub use pod::{DescribeCmd, ExecCmd};
pub use run::{run_config, RunCmd};

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
    Describe(DescribeCmd),
    Logs(LogsCmd),
    Exec(ExecCmd),
    Validate(ValidateCmd),
    Images(ImagesCmd),
    Doctor(DoctorCmd),
    Drain(DrainCmd),
    Version(VersionCmd),
    Monitor(MonitorCmd),
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
