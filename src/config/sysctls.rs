//! `allowedUnsafeSysctls`: checked when the configuration is read, as the kubelet refuses to
//! start with a pattern that could let a pod change the host's own settings.

/// An `allowedUnsafeSysctls` entry, checked as the kubelet's `NewAllowlist` does: a sysctl
/// name or a `prefix*` pattern, of a sysctl known to be namespaced.
pub(super) fn check_sysctl_pattern(pattern: &str) -> Result<(), String> {
    use crate::manifest::validate::{normalize_sysctl, sysctl_namespace};
    let bare = pattern.strip_suffix('*').unwrap_or(pattern);
    let well_formed = !bare.is_empty()
        && pattern.len() <= 253
        && bare.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'/' | b'-' | b'_')
        });
    if !well_formed {
        return Err(format!(
            "{pattern:?} is not a sysctl name or a pattern such as net.ipv4.*"
        ));
    }
    if sysctl_namespace(&normalize_sysctl(bare)).is_none() {
        return Err(format!(
            "the sysctls {pattern:?} are not known to be namespaced (only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* are)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_sysctl_pattern;

    #[test]
    fn only_namespaced_sysctls_may_be_allowed() {
        for ok in [
            "net.*",
            "net.core.somaxconn",
            "kernel.msg*",
            "kernel.shm_rmid_forced",
            "fs.mqueue.*",
            "net/ipv4/ip_forward",
        ] {
            assert!(check_sysctl_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["kernel.hostname", "vm.*", "*", "", "Net.x", "kernel.*"] {
            assert!(check_sysctl_pattern(bad).is_err(), "{bad}");
        }
    }
}
