//! Security decisions for one container, made as the kubelet and containerd make them:
//! capability sets ([`caps`]), the seccomp profile ([`seccomp`]), `runAsNonRoot` against the
//! image's user, the sysctl allowlist, supplementary groups, and an emptyDir's ownership
//! ([`fsgroup`]).
//!
//! [`decide`] is called once per container start, before the bundle is generated; it reads
//! only a `Localhost` seccomp profile when the pod names one (the host's capabilities and the
//! default profile are read once per agent). Its refusals carry the kubelet's reason and
//! message, so `kubectl describe` on a kubelet and `staticlet get pods` say the same thing.

pub mod caps;
pub mod fsgroup;
pub mod seccomp;
mod sysctls;

pub use caps::{capabilities, host_capabilities, CapSets};

use crate::config::Config;
use crate::manifest::pod::Container;
use crate::manifest::StaticPod;
use oci_spec::runtime::LinuxSeccomp;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The agent's settings that security decisions depend on.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub seccomp_root: PathBuf,
    pub seccomp_default: bool,
    pub allowed_unsafe_sysctls: Vec<String>,
    /// The host's bounding set ([`host_capabilities`]).
    pub host_caps: Vec<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            seccomp_root: config.seccomp_root(),
            seccomp_default: config.seccomp_default,
            allowed_unsafe_sysctls: config.allowed_unsafe_sysctls.clone(),
            host_caps: host_capabilities(),
        }
    }
}

/// What [`decide`] settled for a container; the bundle writes it into `config.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Security {
    pub privileged: bool,
    pub caps: CapSets,
    pub seccomp: Option<LinuxSeccomp>,
    pub no_new_privileges: bool,
    /// The pod's sysctls, normalized (`net.ipv4.ip_forward`), already allowed.
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("forbidden sysctl: {0}")]
    Sysctl(#[from] sysctls::SysctlError),
    #[error("cannot load seccomp profile {}: {source}", path.display())]
    Seccomp {
        path: PathBuf,
        source: seccomp::SeccompError,
    },
}

impl SecurityError {
    /// The container status reason the kubelet reports for it.
    pub fn reason(&self) -> &'static str {
        match self {
            SecurityError::Sysctl(_) => "SysctlForbidden",
            SecurityError::Seccomp { .. } => "CreateContainerError",
            _ => "CreateContainerConfigError",
        }
    }
}

/// The kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_ref(pod: &StaticPod) -> String {
    format!("{}_{}({})", pod.name(), pod.namespace(), pod.uid())
}

/// The kubelet's `verifyRunAsNonRoot`. `image_user` is the image's `User` as written: only a
/// number (or `number:group`) can be checked, a name cannot, and none means root.
pub fn verify_run_as_non_root(
    pod: &StaticPod,
    c: &Container,
    image_user: &str,
) -> Result<(), SecurityError> {
    let psc = pod.pod.spec.security_context.as_ref();
    let csc = c.security_context.as_ref();
    let non_root = csc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let (pod_ref, container) = (pod_ref(pod), c.name.clone());
    if let Some(uid) = csc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
    {
        return match uid {
            0 => Err(SecurityError::RunAsUserRoot {
                pod: pod_ref,
                container,
            }),
            _ => Ok(()),
        };
    }
    let user = image_user.split(':').next().unwrap_or("");
    match user.parse::<u32>() {
        Ok(0) => Err(SecurityError::ImageRunsAsRoot {
            pod: pod_ref,
            container,
        }),
        Ok(_) => Ok(()),
        Err(_) if user.is_empty() => Err(SecurityError::ImageRunsAsRoot {
            pod: pod_ref,
            container,
        }),
        Err(_) => Err(SecurityError::NonNumericUser {
            user: user.to_string(),
            pod: pod_ref,
            container,
        }),
    }
}

/// The container's supplementary groups as the kubelet passes them to the runtime: the pod's
/// `fsGroup` first, then its `supplementalGroups`.
pub fn supplementary_groups(pod: &StaticPod) -> Vec<u32> {
    let Some(sc) = &pod.pod.spec.security_context else {
        return Vec::new();
    };
    let mut groups: Vec<u32> = Vec::new();
    for g in sc.fs_group.iter().chain(&sc.supplemental_groups) {
        if let Ok(g) = u32::try_from(*g) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    groups
}

/// Everything security-related about starting `c`, or the kubelet's refusal.
pub fn decide(
    pod: &StaticPod,
    c: &Container,
    image_user: &str,
    settings: &Settings,
) -> Result<Security, SecurityError> {
    verify_run_as_non_root(pod, c, image_user)?;
    let sysctls = sysctls::allowed(&pod.pod, &settings.allowed_unsafe_sysctls)?;
    let sc = c.security_context.clone().unwrap_or_default();
    let privileged = sc.privileged.unwrap_or(false);
    let caps = capabilities(c, privileged, &settings.host_caps);
    // containerd applies no seccomp profile to a privileged container.
    let choice = seccomp::choice(
        &pod.pod,
        c,
        &settings.seccomp_root,
        settings.seccomp_default,
    );
    let seccomp = match choice {
        _ if privileged => None,
        seccomp::Choice::Unconfined => None,
        seccomp::Choice::RuntimeDefault => {
            Some(seccomp::runtime_default(&caps.bounding).map_err(|source| {
                SecurityError::Seccomp {
                    path: "(built in)".into(),
                    source,
                }
            })?)
        }
        seccomp::Choice::Localhost(path) => Some(
            seccomp::localhost(&path).map_err(|source| SecurityError::Seccomp { path, source })?,
        ),
    };
    Ok(Security {
        privileged,
        caps,
        seccomp,
        no_new_privileges: !sc.allow_privilege_escalation.unwrap_or(true) && !privileged,
        sysctls,
    })
}

#[cfg(test)]
mod tests;
