//! The `staticlet` binary: parse flags, hand over to the library, map errors to exit codes
//! (2 for usage and configuration errors, 1 for anything else).

fn main() {
    // The per-container monitor is started by the agent: skip flag parsing, keep it lean.
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(4).collect();
    if args.len() == 3 && args[1] == "monitor" {
        let dir = std::path::PathBuf::from(&args[2]);
        std::process::exit(i32::from(staticlet::runtime::monitor::main(&dir).is_err()));
    }
    let cli = staticlet::cli::parse_args();
    std::process::exit(staticlet::commands::dispatch(cli));
}
