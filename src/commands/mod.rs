//! The subcommands. Each returns the process exit code; errors are printed here, once.

mod client;
mod doctor;
mod drain;
pub mod exec;
mod images;
mod run;
mod validate;

use crate::cli::{Cli, Command, Failure};

pub fn dispatch(cli: Cli) -> i32 {
    let Some(command) = cli.command.filter(|_| !cli.version) else {
        println!("staticlet {}", env!("CARGO_PKG_VERSION"));
        return 0;
    };
    if let Command::Exec(cmd) = &command {
        return exec::run(cmd);
    }
    let result = match command {
        Command::Run(cmd) => run::run(&cmd),
        Command::Validate(cmd) => validate::run(&cmd),
        Command::Images(cmd) => images::run(&cmd),
        Command::Doctor(cmd) => doctor::run(&cmd),
        Command::Drain(cmd) => drain::run(&cmd),
        Command::Version(_) => {
            println!("staticlet {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Get(cmd) => client::get(&cmd),
        Command::Logs(cmd) => client::logs(&cmd),
        Command::Describe(cmd) => client::describe(&cmd),
        Command::Exec(_) => Ok(()),
        Command::Monitor(cmd) => crate::runtime::monitor::main(&cmd.dir).map_err(|e| match e {
            crate::runtime::monitor::MonitorError::Reported(_) => Failure::Failed(String::new()),
            e => Failure::Failed(e.to_string()),
        }),
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            eprintln!("staticlet: {m}");
            2
        }
        Err(Failure::Failed(m)) => {
            if !m.is_empty() {
                eprintln!("staticlet: {m}");
            }
            1
        }
    }
}
