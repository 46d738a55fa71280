//! What is on the host, read from /proc: processes, their arguments, the agent's monitors,
//! mount points. Shared by the tests and the benchmark (benches/agent.rs).

use std::fs;
use std::path::{Path, PathBuf};

/// Every process's pid.
pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's arguments (none when it has gone).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A process's parent.
pub fn parent(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The monitors of the agent rooted at `root`: processes run as `staticlet monitor <dir
/// below the root>`. An ARM binary under binfmt_misc shows qemu's interpreter and the
/// binary's path before its own arguments, so the arguments are searched, not taken by
/// position. A monitor's child between its fork and its exec (crun, a moment later) still
/// shows the monitor's arguments: it is not counted (under qemu-user that moment is long
/// enough for a 50 ms poll to see it).
pub fn monitors(root: &Path) -> Vec<i32> {
    let root = root.to_string_lossy();
    let all: Vec<i32> = pids()
        .into_iter()
        .filter(|pid| {
            cmdline(*pid)
                .windows(2)
                .any(|w| w[0] == "monitor" && w[1].starts_with(&*root))
        })
        .collect();
    all.iter()
        .copied()
        .filter(|pid| !parent(*pid).is_some_and(|pp| all.contains(&pp)))
        .collect()
}

/// Mount points at or below `prefix`, deepest first (each once).
pub fn mounts_below(prefix: &Path) -> Vec<PathBuf> {
    let mut out = staticlet::sys::fsutil::mounts_below(prefix);
    out.dedup();
    out
}

/// A loopback port nothing listens on (a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}
