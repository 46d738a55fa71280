//! OCI runtime spec generation: one container of a static pod becomes a `config.json`.
//!
//! Pure: everything the spec needs (resolved user, namespace paths, volume paths, IPs) is
//! passed in, and the result is checked by parsing it as an `oci_spec::runtime::Spec`.
//! Defaults follow containerd's for Kubernetes: the same default capabilities, masked and
//! read-only paths, and device rules, so a pod behaves as it would on a kubelet node.

mod env;
mod mounts;

pub use env::{environment, field_value, resource_field_value, Allocatable, ResourceError};
pub use mounts::{propagation, Propagation};

use super::security::Security;
use crate::manifest::pod::Container;
use crate::manifest::quantity::Quantity;
use crate::manifest::StaticPod;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The image's runtime defaults (OCI image config `config` section).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
}

/// Paths of the pod's shared namespaces; `None` means the host's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod's shared PID namespace (`shareProcessNamespace`).
    pub pid: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct BundleInput<'a> {
    pub pod: &'a StaticPod,
    pub container: &'a Container,
    pub image: &'a ImageDefaults,
    pub rootfs: PathBuf,
    pub namespaces: PodNamespaces,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` files for the pod.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Shared `/dev/shm` of the pod, when it has its own IPC namespace.
    pub shm: Option<PathBuf>,
    /// Host directory of each volume, by volume name.
    pub volumes: BTreeMap<String, PathBuf>,
    /// The staging point of each volumeMount with a `subPath`, by index (see
    /// [`super::subpath`]): never `<volume>/<subPath>` resolved by the host.
    pub sub_paths: BTreeMap<usize, PathBuf>,
    pub cgroups_path: String,
    /// Most processes the container may have; `None` for no limit.
    pub pids_limit: Option<i64>,
    pub hostname: String,
    pub host_ip: String,
    pub pod_ip: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Capabilities, seccomp, no_new_privs and sysctls, from [`crate::runtime::security`].
    pub security: Security,
    /// The node's allocatable resources, for `resourceFieldRef` without a limit.
    pub allocatable: Allocatable,
}

/// The process arguments, by the Kubernetes rules for `command`/`args` over Entrypoint/Cmd.
pub fn process_args(c: &Container, image: &ImageDefaults) -> Vec<String> {
    match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => cmd.iter().chain(args).cloned().collect(),
        (Some(cmd), None) => cmd.clone(),
        (None, Some(args)) => image.entrypoint.iter().chain(args).cloned().collect(),
        (None, None) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// Why a container's OCI spec could not be made from the pod and the image: each names what
/// to fix.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("no command: the container sets no command and the image has no Entrypoint or Cmd")]
    NoCommand,
    #[error("volume {0:?} has no host path")]
    NoHostPath(String),
    #[error("volumeMount {mount:?}: subPath {sub_path:?} was not prepared")]
    SubPathNotPrepared { mount: String, sub_path: String },
    #[error("env {env}: resourceFieldRef: {source}")]
    EnvResource { env: String, source: ResourceError },
    /// A `mountPropagation` the volume's host path cannot give (containerd's check).
    #[error(
        "volumeMount {mount:?}: path {path:?} is mounted on {mount_point:?} but it is not a {kind} mount \
         (mountPropagation: {wanted}); make it one on the host (mount --make-rshared {mount_point})"
    )]
    NotPropagating {
        mount: String,
        path: String,
        mount_point: String,
        kind: &'static str,
        wanted: String,
    },
    #[error("internal error building the OCI spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

fn oci<T>(r: Result<T, oci_spec::OciSpecError>) -> Result<T, BundleError> {
    Ok(r?)
}

fn namespace(
    kind: LinuxNamespaceType,
    path: Option<&PathBuf>,
) -> Result<LinuxNamespace, BundleError> {
    let b = LinuxNamespaceBuilder::default().typ(kind);
    oci(match path {
        Some(p) => b.path(p.clone()).build(),
        None => b.build(),
    })
}

fn device_rule(
    allow: bool,
    kind: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
) -> Result<LinuxDeviceCgroup, BundleError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access("rwm");
    if let Some(k) = kind {
        b = b.typ(k);
    }
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    oci(b.build())
}

/// CPU, memory and process limits the kubelet's way: CPU limit -> CFS quota over a 100 ms
/// period, CPU request -> shares (crun maps shares to cpu.weight on cgroup v2).
pub fn resources(
    c: &Container,
    pids_limit: Option<i64>,
    privileged: bool,
) -> Result<LinuxResources, BundleError> {
    let get = |m: &BTreeMap<String, crate::manifest::pod::QuantityValue>, k: &str| {
        m.get(k).and_then(|q| Quantity::parse(&q.as_text()))
    };
    let mut r = LinuxResourcesBuilder::default();
    let mut devices = vec![device_rule(privileged, None, None, None)?];
    if !privileged {
        // null, zero, full, random, urandom, tty, console, ptmx and the pty slaves.
        for (maj, min) in [
            (1, Some(3)),
            (1, Some(5)),
            (1, Some(7)),
            (1, Some(8)),
            (1, Some(9)),
            (5, Some(0)),
            (5, Some(1)),
            (5, Some(2)),
            (136, None),
        ] {
            devices.push(device_rule(true, Some(LinuxDeviceType::C), Some(maj), min)?);
        }
    }
    r = r.devices(devices);
    let cpu_limit = get(&c.resources.limits, "cpu");
    let cpu_request = get(&c.resources.requests, "cpu").or(cpu_limit);
    if cpu_limit.is_some() || cpu_request.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(l) = cpu_limit {
            cpu = cpu
                .period(100_000u64)
                .quota((l.milli() * 100).max(1000) as i64);
        }
        if let Some(req) = cpu_request {
            cpu = cpu.shares(((req.milli() * 1024) / 1000).max(2) as u64);
        }
        r = r.cpu(oci(cpu.build())?);
    }
    if let Some(m) = get(&c.resources.limits, "memory") {
        r = r.memory(oci(LinuxMemoryBuilder::default()
            .limit(m.value() as i64)
            .build())?);
    }
    if let Some(n) = pids_limit {
        r = r.pids(oci(LinuxPidsBuilder::default().limit(n).build())?);
    }
    oci(r.build())
}

fn capability_set(names: &[String]) -> Capabilities {
    // Every name came from the capability list, which oci-spec knows too.
    names
        .iter()
        .filter_map(|n| Capability::from_str(n.trim_start_matches("CAP_")).ok())
        .collect()
}

/// Builds the container's `config.json` with oci-spec's types (serialised only, never parsed
/// back, which keeps oci-spec's runtime deserializers out of the binary).
pub fn generate(input: &BundleInput) -> Result<Spec, BundleError> {
    let c = input.container;
    let sc = c.security_context.clone().unwrap_or_default();
    let security = &input.security;
    let privileged = security.privileged;
    let read_only = sc.read_only_root_filesystem.unwrap_or(false);
    let caps = &security.caps;
    let args = process_args(c, input.image);
    if args.is_empty() {
        return Err(BundleError::NoCommand);
    }
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let (mounts, rootfs_propagation) = mounts::mounts(input, privileged, read_only)?;
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)?];
    // `hostPID`: the host's PID namespace (the container sees and may signal host processes,
    // as on a kubelet); otherwise one of its own.
    // `shareProcessNamespace`: the pod's, held by its PID 1.
    if let Some(p) = &input.namespaces.pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, Some(p))?);
    } else if !input.pod.pod.spec.host_pid {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None)?);
    }
    for (kind, path) in [
        (LinuxNamespaceType::Network, &input.namespaces.net),
        (LinuxNamespaceType::Ipc, &input.namespaces.ipc),
        (LinuxNamespaceType::Uts, &input.namespaces.uts),
    ] {
        if let Some(p) = path {
            namespaces.push(namespace(kind, Some(p))?);
        }
    }
    let mut linux = oci(LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&input.cgroups_path))
        .resources(resources(c, input.pids_limit, privileged)?)
        .masked_paths(MASKED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build())?;
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    linux.set_seccomp(security.seccomp.clone());
    if rootfs_propagation != Propagation::Private {
        linux.set_rootfs_propagation(Some(rootfs_propagation.option().into()));
    }
    if !security.sysctls.is_empty() {
        linux.set_sysctl(Some(
            security
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ));
    }
    let mut user = UserBuilder::default().uid(input.uid).gid(input.gid);
    if !input.additional_gids.is_empty() {
        user = user.additional_gids(input.additional_gids.clone());
    }
    let mut process = oci(ProcessBuilder::default()
        .terminal(false)
        .user(oci(user.build())?)
        .args(args)
        .env(environment(input)?)
        .cwd(PathBuf::from(cwd))
        // All five sets, always: oci-spec's defaults would put capabilities into the
        // inheritable and ambient sets that `drop` removed from the bounding set.
        .capabilities(oci(LinuxCapabilitiesBuilder::default()
            .bounding(capability_set(&caps.bounding))
            .effective(capability_set(&caps.effective))
            .permitted(capability_set(&caps.permitted))
            .inheritable(capability_set(&caps.inheritable))
            .ambient(capability_set(&caps.ambient))
            .build())?)
        .no_new_privileges(security.no_new_privileges)
        .build())?;
    // No rlimits: raising one above the agent's own hard limit fails without CAP_SYS_RESOURCE.
    process.set_rlimits(None);
    let annotations: HashMap<String, String> = [
        ("io.kubernetes.pod.name", input.pod.name()),
        ("io.kubernetes.pod.namespace", input.pod.namespace()),
        ("io.kubernetes.pod.uid", input.pod.uid()),
        ("io.kubernetes.container.name", c.name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut spec = oci(SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(oci(RootBuilder::default()
            .path(input.rootfs.clone())
            .readonly(read_only)
            .build())?)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build())?;
    spec.set_hostname(
        input
            .namespaces
            .uts
            .is_some()
            .then(|| input.hostname.clone()),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests;
