//! The `staticlet` binary: parse flags, hand over to the library, map errors to exit codes
//! (2 for usage and configuration errors, 1 for anything else).

fn main() {
    let cli = staticlet::cli::parse_args();
    std::process::exit(staticlet::commands::dispatch(cli));
}
