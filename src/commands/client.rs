//! `staticlet get pods`, `describe pod` and `logs`: the flags become [`crate::client`]'s requests,
//! sent to the status address of `--status-address`, `--config` or the default.

use crate::cli::{client_address, DescribeCmd, Failure, GetCmd, LogsCmd};
use crate::client::{ClientError, DescribeArgs, GetArgs, LogsArgs};

pub(super) fn failure(e: ClientError) -> Failure {
    match e {
        ClientError::Usage(m) => Failure::Usage(m),
        ClientError::Reported => Failure::Failed(String::new()),
        e => Failure::Failed(e.to_string()),
    }
}

pub fn get(cmd: &GetCmd) -> Result<(), Failure> {
    let args = GetArgs {
        resource: cmd.resource.clone(),
        names: cmd.names.clone(),
        output: cmd.output.clone(),
        namespace: cmd.namespace.clone(),
    };
    // What was asked is checked before the address, as before the agent is contacted.
    args.names().map_err(failure)?;
    let addr = client_address(cmd.config.as_ref(), cmd.status_address.as_ref())?;
    crate::client::get(addr, &args).map_err(failure)
}

pub fn logs(cmd: &LogsCmd) -> Result<(), Failure> {
    let addr = client_address(cmd.config.as_ref(), cmd.status_address.as_ref())?;
    let args = LogsArgs {
        pod: cmd.pod.clone(),
        container: cmd.container.clone(),
        namespace: cmd.namespace.clone(),
        follow: cmd.follow,
        previous: cmd.previous,
    };
    crate::client::logs(addr, &args).map_err(failure)
}

pub fn describe(cmd: &DescribeCmd) -> Result<(), Failure> {
    let addr = client_address(cmd.config.as_ref(), cmd.status_address.as_ref())?;
    let args = DescribeArgs {
        resource: cmd.resource.clone(),
        name: cmd.name.clone(),
        namespace: cmd.namespace.clone(),
    };
    crate::client::describe(addr, &args).map_err(failure)
}
