//! `staticlet run`: the configuration from `--config` and the flags, then the agent.

use crate::cli::{run_config, Failure, RunCmd};

pub fn run(cmd: &RunCmd) -> Result<(), Failure> {
    let config = run_config(cmd)?;
    crate::agent::run(config, cmd.verbose).map_err(|e| {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Failed(e.to_string())
        }
    })
}
