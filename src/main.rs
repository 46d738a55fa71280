//! The `staticlet` binary: parse flags, hand over to the library, map errors to exit codes
//! (2 for usage and configuration errors, 1 for anything else).

fn main() {
    // The per-container monitor is started by the agent: skip flag parsing, keep it lean.
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(4).collect();
    if args.len() == 3 && args[1] == "monitor" {
        let dir = std::path::PathBuf::from(&args[2]);
        std::process::exit(i32::from(staticlet::runtime::monitor::main(&dir).is_err()));
    }
    // The holder of a pod's shared PID namespace, likewise started by the agent.
    if args.len() == 3 && args[1] == staticlet::runtime::pidns::ARG {
        let dir = std::path::PathBuf::from(&args[2]);
        std::process::exit(staticlet::runtime::pidns::main(&dir));
    }
    let cli = staticlet::cli::parse_args();
    std::process::exit(staticlet::commands::dispatch(cli));
}
