//! `staticlet describe pod` and `staticlet exec`: a look at one pod, and a command in one of
//! its containers, on the gateway itself.

use argh::FromArgs;
use std::path::PathBuf;

/// show one pod in detail, as kubectl describe does: describe pod NAME
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "describe")]
pub struct DescribeCmd {
    /// what to describe: pod (or pods, po, pod/NAME)
    #[argh(positional)]
    pub resource: String,
    /// the pod's name, with or without the node suffix
    #[argh(positional)]
    pub name: Option<String>,
    /// namespace (default: any, when the name is unique)
    #[argh(option, short = 'n')]
    pub namespace: Option<String>,
    /// configuration file (for the status address)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the agent's status endpoint (default 127.0.0.1:10255)
    #[argh(option)]
    pub status_address: Option<String>,
}

/// run a command in a container: exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "exec")]
pub struct ExecCmd {
    /// pod name, with or without the node suffix
    #[argh(positional)]
    pub pod: String,
    /// the command and its arguments (after --)
    #[argh(positional, greedy)]
    pub command: Vec<String>,
    /// container (default: the only one, or the first)
    #[argh(option, short = 'c')]
    pub container: Option<String>,
    /// namespace (default: any, when the name is unique)
    #[argh(option, short = 'n')]
    pub namespace: Option<String>,
    /// pass stdin to the command
    #[argh(switch, short = 'i')]
    pub stdin: bool,
    /// give the command a terminal (with -i, when stdin is one)
    #[argh(switch, short = 't')]
    pub tty: bool,
    /// configuration file (for the status address, root dir and runtime)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// the agent's status endpoint (default 127.0.0.1:10255)
    #[argh(option)]
    pub status_address: Option<String>,
    /// the agent's state directory (default /var/lib/staticlet)
    #[argh(option)]
    pub root_dir: Option<PathBuf>,
}
