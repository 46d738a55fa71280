//! The cgroup parent of an agent's pods (`cgroupRoot`). It must belong to one agent: the
//! start-up sweep removes every `pod*` cgroup under it that the agent does not know, so two
//! agents sharing one would remove each other's, and a sweep of a shared parent grows with
//! every other agent's pods.

use super::DEFAULT_ROOT_DIR;
use std::path::{Path, PathBuf};

/// The default root dir's pods live under `/staticlet` (as they always have, so an upgraded
/// gateway keeps its cgroups); any other root dir gets `/staticlet-<8 hex digits of the
/// SHA-256 of its absolute path>`: stable across restarts, distinct per root dir.
pub fn default_cgroup_root(root_dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    // Through its components, so that `/data/a/` and `/data/./a` are `/data/a`.
    let absolute: PathBuf = std::path::absolute(root_dir)
        .unwrap_or_else(|_| root_dir.to_path_buf())
        .components()
        .collect();
    if absolute == Path::new(DEFAULT_ROOT_DIR) {
        return "/staticlet".into();
    }
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("/staticlet-{short}")
}

/// Checks a `cgroupRoot` / `--cgroup-root` value: an absolute cgroup path below the
/// hierarchy's root, in plain names. Returns it without a trailing slash.
pub fn parse_cgroup_root(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    if !text.starts_with('/') {
        return Err(format!(
            "{text:?} must be an absolute cgroup path such as /staticlet"
        ));
    }
    if trimmed.is_empty() {
        return Err(format!(
            "{text:?}: the root cgroup cannot be used: the startup sweep removes every pod* \
             cgroup it does not know under cgroupRoot, so it must be this agent's own, such as /staticlet"
        ));
    }
    for part in trimmed.trim_start_matches('/').split('/') {
        let plain = !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
        if !plain {
            return Err(format!(
                "{text:?}: {part:?} is not a plain cgroup name (letters, digits, '-', '_', '.', '@', ':')"
            ));
        }
    }
    Ok(trimmed.to_string())
}
