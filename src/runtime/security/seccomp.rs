//! Seccomp: the `RuntimeDefault` profile, `Localhost` profiles, and which one applies.
//!
//! `RuntimeDefault` is podman's and CRI-O's default profile (containers/common 0.50.1, see
//! `seccomp_default.NOTICE`), turned into the OCI form as containers/common does: the
//! architectures of this host, and only the rules whose `includes`/`excludes` match this
//! architecture and the container's bounding capabilities (a container given
//! `CAP_SYS_ADMIN` may call `bpf` and `setns`, ...). Unknown system calls fail with `ENOSYS`,
//! the obsolete and dangerous ones (`kexec_load`, `userfaultfd`, `vmsplice`, ...) with
//! `EPERM`, and those a capability guards (`open_by_handle_at`, `init_module`, `acct`,
//! `settimeofday`, ...) unless the container has it. Unlike containerd's profile it allows
//! `mount`, `unshare` and `ptrace`, which the capabilities still guard. The profile is parsed
//! once per agent; per container, filtering it is a pass over 35 rules.
//!
//! `Localhost` profiles are files in the OCI `linux.seccomp` form under the configured root
//! (`seccompProfileRoot`, by default `<rootDir>/seccomp`), read as containerd reads them.

use crate::manifest::pod::{Container, Pod, SeccompProfile};
use oci_spec::runtime::LinuxSeccomp;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A Localhost profile larger than this is refused before it is read.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

/// The profile file's own format (docker's, with `archMap` and conditional rules).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    args: Option<Vec<Value>>,
    errno_ret: Option<u32>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
}

/// What the pod asks for, after the kubelet's precedence (container, then pod, then
/// `seccompDefault`).
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Unconfined,
    RuntimeDefault,
    Localhost(PathBuf),
}

/// The kubelet's `getSeccompProfile`: the container's profile, else the pod's, else
/// `RuntimeDefault` when `seccompDefault` is on, else `Unconfined`.
pub fn choice(pod: &Pod, c: &Container, root: &Path, seccomp_default: bool) -> Choice {
    let pick = |p: &SeccompProfile| match p.kind.as_str() {
        "RuntimeDefault" => Choice::RuntimeDefault,
        "Localhost" => Choice::Localhost(root.join(p.localhost_profile.as_deref().unwrap_or(""))),
        _ => Choice::Unconfined,
    };
    let container = c
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    let pod_level = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    match container.or(pod_level) {
        Some(p) => pick(p),
        None if seccomp_default => Choice::RuntimeDefault,
        None => Choice::Unconfined,
    }
}

fn default_profile() -> Option<&'static Profile> {
    static PARSED: OnceLock<Option<Profile>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(DEFAULT_PROFILE).ok())
        .as_ref()
}

/// Go's name for this architecture, as the profile's `includes.arches` uses it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// libseccomp's name for this architecture.
fn seccomp_arch() -> String {
    let name = match std::env::consts::ARCH {
        "x86_64" => "X86_64",
        "aarch64" => "AARCH64",
        "arm" => "ARM",
        "x86" => "X86",
        "powerpc64" => "PPC64LE",
        "riscv64" => "RISCV64",
        "s390x" => "S390X",
        other => other,
    };
    format!("SCMP_ARCH_{name}")
}

/// Why a seccomp profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the built-in seccomp profile does not parse")]
    BuiltInUnparsed,
    #[error("the built-in seccomp profile: {0}")]
    BuiltIn(serde_json::Error),
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge,
    #[error("not a seccomp profile in the OCI form (defaultAction, syscalls): {0}")]
    NotOci(serde_json::Error),
}

/// The `RuntimeDefault` profile in the OCI form for a container with the given bounding set.
pub fn runtime_default(bounding: &[String]) -> Result<LinuxSeccomp, SeccompError> {
    let profile = default_profile().ok_or(SeccompError::BuiltInUnparsed)?;
    let native = seccomp_arch();
    let arch = go_arch();
    let architectures: Vec<String> = profile
        .arch_map
        .iter()
        .find(|m| m.architecture == native)
        .map(|m| {
            std::iter::once(native.clone())
                .chain(m.sub_architectures.clone())
                .collect()
        })
        // The profile maps no entry to some architectures (32-bit ARM is only a
        // sub-architecture of AARCH64 there): the native one alone, as on armv7 gateways.
        .unwrap_or_else(|| vec![native.clone()]);
    let has = |cap: &String| bounding.contains(cap);
    let syscalls: Vec<Value> = profile
        .syscalls
        .iter()
        .filter(|r| !r.excludes.arches.iter().any(|a| a == arch))
        .filter(|r| !r.excludes.caps.iter().any(has))
        .filter(|r| r.includes.arches.is_empty() || r.includes.arches.iter().any(|a| a == arch))
        .filter(|r| r.includes.caps.iter().all(has))
        .map(|r| {
            let mut s = json!({"names": r.names, "action": r.action});
            if let Some(args) = r.args.as_ref().filter(|a| !a.is_empty()) {
                s["args"] = json!(args);
            }
            if let Some(errno) = r.errno_ret {
                s["errnoRet"] = json!(errno);
            }
            s
        })
        .collect();
    let mut oci = json!({"defaultAction": profile.default_action, "syscalls": syscalls});
    if let Some(errno) = profile.default_errno_ret {
        oci["defaultErrnoRet"] = json!(errno);
    }
    if !architectures.is_empty() {
        oci["architectures"] = json!(architectures);
    }
    serde_json::from_value(oci).map_err(SeccompError::BuiltIn)
}

/// A `Localhost` profile: a JSON file in the OCI `linux.seccomp` form.
pub fn localhost(path: &Path) -> Result<LinuxSeccomp, SeccompError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(SeccompError::TooLarge);
    }
    serde_json::from_slice(&bytes).map_err(SeccompError::NotOci)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| format!("{:?}", r.action()).contains("Allow"))
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn the_default_profile_follows_the_capabilities() {
        let plain = runtime_default(&["CAP_CHOWN".to_string()]).unwrap();
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["architectures"][0], seccomp_arch());
        let allowed = names(&plain);
        assert!(allowed.contains(&"read".to_string()));
        assert!(!allowed.contains(&"kexec_load".to_string()));
        assert!(!allowed.contains(&"bpf".to_string()));
        assert!(!allowed.contains(&"chroot".to_string()));
        let admin =
            runtime_default(&["CAP_SYS_ADMIN".to_string(), "CAP_SYS_CHROOT".to_string()]).unwrap();
        assert!(names(&admin).contains(&"bpf".to_string()));
        assert!(names(&admin).contains(&"chroot".to_string()));
    }

    #[test]
    fn localhost_profiles_are_read_and_bad_ones_named() {
        let dir = std::env::temp_dir().join(format!("stl-seccomp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("audit.json");
        std::fs::write(&good, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();
        let p = localhost(&good).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap()["defaultAction"],
            "SCMP_ACT_LOG"
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_PLEASE"}"#).unwrap();
        assert!(matches!(localhost(&bad), Err(SeccompError::NotOci(_))));
        assert!(localhost(&dir.join("missing.json")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
