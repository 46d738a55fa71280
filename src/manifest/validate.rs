//! Validation of a decoded Pod, with the kubelet's rules for static pods.
//!
//! Every error carries the field path in Kubernetes syntax and a message phrased like the API
//! server's, so users can search for it. Names are checked here before they are ever used to
//! build a filesystem path.

use super::pod::{Container, Handler, IntOrString, Pod, Probe, QuantityValue};
use super::quantity::Quantity;
use super::FieldError;
use std::collections::BTreeSet;

const MAX_NAME: usize = 253;

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_label_key(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    }
}

fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capability's kernel name (`CAP_NET_ADMIN`), or `None` when it is not one.
pub fn capability_name(cap: &str) -> Option<String> {
    let bare = cap.strip_prefix("CAP_").unwrap_or(cap).to_ascii_uppercase();
    CAPABILITIES
        .contains(&bare.as_str())
        .then(|| format!("CAP_{bare}"))
}

pub const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.podIP",
    "status.podIPs",
];

fn supported_field_path(path: &str) -> bool {
    FIELD_PATHS.contains(&path)
        || ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .any(|p| path.starts_with(p) && path.ends_with("']"))
}

fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

/// Validates a decoded Pod as a static pod for `node`; returns every problem found.
pub fn validate(pod: &Pod, node: &str) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    if pod.api_version != "v1" {
        e.add(
            "apiVersion",
            format!("Invalid value: {:?}: must be v1", pod.api_version),
        );
    }
    if pod.kind != "Pod" {
        e.add(
            "kind",
            format!("Invalid value: {:?}: must be Pod", pod.kind),
        );
    }
    validate_metadata(pod, node, &mut e);
    validate_spec(pod, &mut e);
    e.0
}

fn validate_metadata(pod: &Pod, node: &str, e: &mut Errors) {
    let m = &pod.metadata;
    if m.name.is_empty() {
        e.add("metadata.name", "Required value: a static pod needs a name");
    } else if !is_dns1123_subdomain(&m.name) {
        e.add(
            "metadata.name",
            format!("Invalid value: {:?}: must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')", m.name),
        );
    } else if m.name.len() + 1 + node.len() > MAX_NAME {
        e.add(
            "metadata.name",
            format!("Invalid value: {:?}: too long: with the node suffix \"-{node}\" it exceeds {MAX_NAME} characters", m.name),
        );
    }
    if !m.namespace.is_empty() && !is_dns1123_label(&m.namespace) {
        e.add(
            "metadata.namespace",
            format!("Invalid value: {:?}: must be a DNS-1123 label (at most 63 lower-case letters, digits and '-')", m.namespace),
        );
    }
    for (k, v) in &m.labels {
        if !is_label_key(k) {
            e.add(
                "metadata.labels",
                format!("Invalid value: {k:?}: not a valid label key"),
            );
        } else if v.len() > 63 {
            e.add(
                "metadata.labels",
                format!("Invalid value: {v:?}: too long: label values have at most 63 characters"),
            );
        } else if !is_label_value(v) {
            e.add(
                "metadata.labels",
                format!("Invalid value: {v:?}: not a valid label value"),
            );
        }
    }
}

fn validate_spec(pod: &Pod, e: &mut Errors) {
    let s = &pod.spec;
    if s.containers.is_empty() {
        e.add(
            "spec.containers",
            "Required value: a pod needs at least one container",
        );
    }
    if s.ephemeral_containers.is_some() {
        e.add(
            "spec.ephemeralContainers",
            "Forbidden: static pods may not have ephemeral containers",
        );
    }
    if let Some(p) = &s.restart_policy {
        if !["Always", "OnFailure", "Never"].contains(&p.as_str()) {
            e.add(
                "spec.restartPolicy",
                unsupported(p, &["Always", "OnFailure", "Never"]),
            );
        }
    }
    if let Some(g) = s.termination_grace_period_seconds {
        if g < 0 {
            e.add(
                "spec.terminationGracePeriodSeconds",
                format!("Invalid value: {g}: must be greater than or equal to 0"),
            );
        }
    }
    let sa = s
        .service_account_name
        .as_deref()
        .or(s.service_account.as_deref())
        .unwrap_or("");
    if !sa.is_empty() && sa != "default" {
        e.add(
            "spec.serviceAccountName",
            format!("Forbidden: static pods may not reference service accounts ({sa:?})"),
        );
    }
    if let Some(sc) = &s.security_context {
        non_negative(e, "spec.securityContext.runAsUser", sc.run_as_user);
        non_negative(e, "spec.securityContext.runAsGroup", sc.run_as_group);
    }
    if let Some(h) = &s.hostname {
        if !is_dns1123_label(h) {
            e.add(
                "spec.hostname",
                format!("Invalid value: {h:?}: must be a DNS-1123 label"),
            );
        }
    }
    let volumes = validate_volumes(pod, e);
    let mut names = BTreeSet::new();
    for (kind, list) in [
        ("initContainers", &s.init_containers),
        ("containers", &s.containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let path = format!("spec.{kind}[{i}]");
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                e.add(
                    format!("{path}.name"),
                    format!("Duplicate value: {:?}", c.name),
                );
            }
            validate_container(c, &path, &volumes, kind == "initContainers", e);
        }
    }
}

fn non_negative(e: &mut Errors, field: &str, v: Option<i64>) {
    if let Some(v) = v.filter(|v| *v < 0) {
        e.add(
            field,
            format!("Invalid value: {v}: must be greater than or equal to 0"),
        );
    }
}

fn validate_volumes<'a>(pod: &'a Pod, e: &mut Errors) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, v) in pod.spec.volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if v.name.is_empty() {
            e.add(format!("{path}.name"), "Required value");
        } else if !is_dns1123_label(&v.name) {
            e.add(
                format!("{path}.name"),
                format!("Invalid value: {:?}: must be a DNS-1123 label", v.name),
            );
        } else if !names.insert(v.name.as_str()) {
            e.add(
                format!("{path}.name"),
                format!("Duplicate value: {:?}", v.name),
            );
        }
        let count = v.host_path.is_some() as usize + v.empty_dir.is_some() as usize + v.other.len();
        if count == 0 {
            e.add(path.clone(), "Required value: must specify a volume type");
        } else if count > 1 {
            e.add(
                path.clone(),
                "Forbidden: may not specify more than 1 volume type",
            );
        }
        if let Some(hp) = &v.host_path {
            if !hp.path.starts_with('/') {
                e.add(
                    format!("{path}.hostPath.path"),
                    format!("Invalid value: {:?}: must be an absolute path", hp.path),
                );
            }
            const TYPES: &[&str] = &[
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            if let Some(t) = hp.kind.as_deref().filter(|t| !TYPES.contains(t)) {
                e.add(format!("{path}.hostPath.type"), unsupported(t, &TYPES[1..]));
            }
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(m) = ed.medium.as_deref().filter(|m| !["", "Memory"].contains(m)) {
                e.add(
                    format!("{path}.emptyDir.medium"),
                    unsupported(m, &["", "Memory"]),
                );
            }
            if let Some(q) = &ed.size_limit {
                check_quantity(e, &format!("{path}.emptyDir.sizeLimit"), q);
            }
        }
        for key in v.other.keys() {
            let field = format!("{path}.{key}");
            let forbidden = match key.as_str() {
                "secret" => Some("secrets"),
                "configMap" => Some("configmaps"),
                "persistentVolumeClaim" | "ephemeral" => Some("persistentvolumeclaims"),
                "projected" => Some("projected service account tokens"),
                _ => None,
            };
            match forbidden {
                Some(what) => e.add(field, format!("Forbidden: static pods may not reference {what}")),
                None => e.add(field, "Unsupported value: volume type not supported by staticlet (use hostPath or emptyDir)"),
            }
        }
    }
    names
}

fn check_quantity(e: &mut Errors, field: &str, q: &QuantityValue) -> Option<Quantity> {
    let parsed = Quantity::parse(&q.as_text());
    if parsed.is_none() {
        e.add(
            field,
            format!(
                "Invalid value: {:?}: must be a quantity (e.g. 250m, 0.5, 64Mi, 1G)",
                q.as_text()
            ),
        );
    }
    parsed
}

fn validate_container(
    c: &Container,
    path: &str,
    volumes: &BTreeSet<&str>,
    init: bool,
    e: &mut Errors,
) {
    if c.name.is_empty() {
        e.add(format!("{path}.name"), "Required value");
    } else if !is_dns1123_label(&c.name) {
        e.add(
            format!("{path}.name"),
            format!("Invalid value: {:?}: must be a DNS-1123 label", c.name),
        );
    }
    if c.image.trim().is_empty() {
        e.add(format!("{path}.image"), "Required value");
    } else if let Err(err) = crate::image::Reference::parse(&c.image) {
        e.add(
            format!("{path}.image"),
            format!("Invalid value: {:?}: {err}", c.image),
        );
    }
    if let Some(p) = c.image_pull_policy.as_deref() {
        if !["Always", "IfNotPresent", "Never"].contains(&p) {
            e.add(
                format!("{path}.imagePullPolicy"),
                unsupported(p, &["Always", "IfNotPresent", "Never"]),
            );
        }
    }
    if let Some(w) = c.working_dir.as_deref().filter(|w| !w.starts_with('/')) {
        e.add(
            format!("{path}.workingDir"),
            format!("Invalid value: {w:?}: must be an absolute path"),
        );
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in c.ports.iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        port_range(e, &format!("{pp}.containerPort"), p.container_port);
        if let Some(h) = p.host_port {
            port_range(e, &format!("{pp}.hostPort"), h);
        }
        if let Some(proto) = p
            .protocol
            .as_deref()
            .filter(|p| !["TCP", "UDP", "SCTP"].contains(p))
        {
            e.add(
                format!("{pp}.protocol"),
                unsupported(proto, &["TCP", "UDP", "SCTP"]),
            );
        }
        if let Some(n) = &p.name {
            port_names.insert(n.as_str());
        }
    }
    for (i, env) in c.env.iter().enumerate() {
        let ep = format!("{path}.env[{i}]");
        let valid_name = !env.name.is_empty()
            && !env.name.as_bytes()[0].is_ascii_digit()
            && env
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name {
            e.add(format!("{ep}.name"), format!("Invalid value: {:?}: a valid environment variable name must consist of letters, digits, '_', '-' or '.', and must not start with a digit", env.name));
        }
        if let Some(vf) = &env.value_from {
            let vp = format!("{ep}.valueFrom");
            if vf.secret_key_ref.is_some() {
                e.add(
                    format!("{vp}.secretKeyRef"),
                    "Forbidden: static pods may not reference secrets",
                );
            }
            if vf.config_map_key_ref.is_some() {
                e.add(
                    format!("{vp}.configMapKeyRef"),
                    "Forbidden: static pods may not reference configmaps",
                );
            }
            if vf.resource_field_ref.is_some() {
                e.add(
                    format!("{vp}.resourceFieldRef"),
                    "Unsupported value: resourceFieldRef is not supported by staticlet",
                );
            }
            if let Some(fr) = &vf.field_ref {
                if !supported_field_path(&fr.field_path) {
                    e.add(
                        format!("{vp}.fieldRef.fieldPath"),
                        unsupported(&fr.field_path, FIELD_PATHS),
                    );
                }
            }
        }
    }
    for (i, ef) in c.env_from.iter().enumerate() {
        if ef.secret_ref.is_some() {
            e.add(
                format!("{path}.envFrom[{i}].secretRef"),
                "Forbidden: static pods may not reference secrets",
            );
        }
        if ef.config_map_ref.is_some() {
            e.add(
                format!("{path}.envFrom[{i}].configMapRef"),
                "Forbidden: static pods may not reference configmaps",
            );
        }
    }
    validate_resources(c, path, e);
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if m.name.is_empty() {
            e.add(format!("{mp}.name"), "Required value");
        } else if !volumes.contains(m.name.as_str()) {
            e.add(
                format!("{mp}.name"),
                format!(
                    "Not found: {:?}: no volume of that name in spec.volumes",
                    m.name
                ),
            );
        }
        if m.mount_path.is_empty() {
            e.add(format!("{mp}.mountPath"), "Required value");
        } else if !m.mount_path.starts_with('/') {
            e.add(
                format!("{mp}.mountPath"),
                format!(
                    "Invalid value: {:?}: must be an absolute path",
                    m.mount_path
                ),
            );
        } else if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
            e.add(
                format!("{mp}.mountPath"),
                format!("Duplicate value: {:?}: must be unique", m.mount_path),
            );
        }
        if let Some(sp) = &m.sub_path {
            if sp.starts_with('/') {
                e.add(
                    format!("{mp}.subPath"),
                    format!("Invalid value: {sp:?}: must be a relative path"),
                );
            } else if sp.split('/').any(|part| part == "..") {
                e.add(
                    format!("{mp}.subPath"),
                    format!("Invalid value: {sp:?}: must not contain '..'"),
                );
            }
        }
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, false),
        ("readinessProbe", &c.readiness_probe, true),
        ("startupProbe", &c.startup_probe, false),
    ];
    for (name, probe, may_succeed_more) in probes {
        if let Some(p) = probe {
            let pp = format!("{path}.{name}");
            if init {
                e.add(pp.clone(), "Forbidden: init containers may not have probes");
            }
            validate_probe(p, &pp, may_succeed_more, &port_names, e);
        }
    }
    if let Some(lc) = &c.lifecycle {
        for (name, h) in [("preStop", &lc.pre_stop), ("postStart", &lc.post_start)] {
            if let Some(h) = h {
                validate_handler(h, &format!("{path}.lifecycle.{name}"), &port_names, e);
            }
        }
    }
    if let Some(sc) = &c.security_context {
        let sp = format!("{path}.securityContext");
        non_negative(e, &format!("{sp}.runAsUser"), sc.run_as_user);
        non_negative(e, &format!("{sp}.runAsGroup"), sc.run_as_group);
        if let Some(caps) = &sc.capabilities {
            for (kind, list) in [("add", &caps.add), ("drop", &caps.drop)] {
                for (i, cap) in list.iter().enumerate() {
                    if cap != "ALL" && capability_name(cap).is_none() {
                        e.add(
                            format!("{sp}.capabilities.{kind}[{i}]"),
                            format!("Invalid value: {cap:?}: not a Linux capability"),
                        );
                    }
                }
            }
        }
    }
}

fn port_range(e: &mut Errors, field: &str, port: i64) {
    if !(1..=65535).contains(&port) {
        e.add(
            field,
            format!("Invalid value: {port}: must be between 1 and 65535, inclusive"),
        );
    }
}

fn validate_resources(c: &Container, path: &str, e: &mut Errors) {
    let mut limits = std::collections::BTreeMap::new();
    for (kind, map) in [
        ("limits", &c.resources.limits),
        ("requests", &c.resources.requests),
    ] {
        for (res, q) in map {
            let field = format!("{path}.resources.{kind}[{res}]");
            if !["cpu", "memory", "ephemeral-storage"].contains(&res.as_str()) && !res.contains('/')
            {
                e.add(field.clone(), format!("Invalid value: {res:?}: must be a standard resource name (cpu, memory, ephemeral-storage)"));
                continue;
            }
            let Some(q) = check_quantity(e, &field, q) else {
                continue;
            };
            if kind == "limits" {
                limits.insert(res.as_str(), q);
            } else if limits.get(res.as_str()).is_some_and(|limit| q > *limit) {
                e.add(
                    field,
                    format!(
                        "Invalid value: {:?}: must be less than or equal to {res} limit of {:?}",
                        map[res].as_text(),
                        c.resources.limits[res].as_text()
                    ),
                );
            }
        }
    }
}

fn validate_probe(
    p: &Probe,
    path: &str,
    may_succeed_more: bool,
    ports: &BTreeSet<&str>,
    e: &mut Errors,
) {
    validate_handler(&p.handler, path, ports, e);
    non_negative(
        e,
        &format!("{path}.initialDelaySeconds"),
        p.initial_delay_seconds,
    );
    for (name, v) in [
        ("periodSeconds", p.period_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("failureThreshold", p.failure_threshold),
        ("successThreshold", p.success_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 1) {
            e.add(
                format!("{path}.{name}"),
                format!("Invalid value: {v}: must be greater than or equal to 1"),
            );
        }
    }
    if let Some(s) = p.success_threshold.filter(|s| *s > 1 && !may_succeed_more) {
        e.add(
            format!("{path}.successThreshold"),
            format!("Invalid value: {s}: must be 1"),
        );
    }
}

fn validate_handler(h: &Handler, path: &str, ports: &BTreeSet<&str>, e: &mut Errors) {
    let count = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.tcp_socket.is_some(),
        h.grpc.is_some(),
        h.sleep.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if count == 0 {
        e.add(path, "Required value: must specify a handler type");
        return;
    }
    if count > 1 {
        e.add(path, "Forbidden: may not specify more than 1 handler type");
        return;
    }
    if h.grpc.is_some() {
        e.add(format!("{path}.grpc"), "Unsupported value: grpc probes are not supported by staticlet yet (use exec, httpGet or tcpSocket)");
    }
    if h.sleep.is_some() {
        e.add(
            format!("{path}.sleep"),
            "Unsupported value: sleep handlers are not supported by staticlet (use exec)",
        );
    }
    if let Some(x) = &h.exec {
        if x.command.is_empty() {
            e.add(format!("{path}.exec.command"), "Required value");
        }
    }
    if let Some(g) = &h.http_get {
        check_port(e, format!("{path}.httpGet.port"), &g.port, ports);
        if let Some(s) = g
            .scheme
            .as_deref()
            .filter(|s| !["HTTP", "HTTPS"].contains(s))
        {
            e.add(
                format!("{path}.httpGet.scheme"),
                unsupported(s, &["HTTP", "HTTPS"]),
            );
        }
    }
    if let Some(t) = &h.tcp_socket {
        check_port(e, format!("{path}.tcpSocket.port"), &t.port, ports);
    }
}

fn check_port(e: &mut Errors, field: String, port: &IntOrString, names: &BTreeSet<&str>) {
    match port {
        IntOrString::Int(p) => port_range(e, &field, *p),
        IntOrString::Str(name) if name.is_empty() => e.add(field, "Required value"),
        IntOrString::Str(name) => match name.parse::<i64>() {
            Ok(p) => port_range(e, &field, p),
            Err(_) if !names.contains(name.as_str()) => e.add(
                field,
                format!("Not found: {name:?}: no container port has that name"),
            ),
            Err(_) => {}
        },
    }
}
