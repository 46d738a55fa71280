//! Validation of one container: image, ports, env, resources, mounts, probes, hooks and
//! security context.

use super::names::{is_dns1123_label, supported_field_path, FIELD_PATHS};
use super::{check_quantity, non_negative, unsupported, Errors};
use crate::manifest::pod::{Container, Handler, IntOrString, Pod, Probe};
use std::collections::BTreeSet;

pub(super) fn validate_container(
    pod: &Pod,
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
            if let Some(r) = &vf.resource_field_ref {
                super::env::validate_resource_field_ref(
                    pod,
                    r,
                    &format!("{vp}.resourceFieldRef"),
                    e,
                );
            }
            if vf.file_key_ref.is_some() {
                super::not_yet(e, &format!("{vp}.fileKeyRef"), "{...}", "fileKeyRef");
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
    // A native sidecar: an init container that keeps running beside the app containers.
    let sidecar = init && c.restart_policy.as_deref() == Some("Always");
    let probes = [
        ("livenessProbe", &c.liveness_probe, false),
        ("readinessProbe", &c.readiness_probe, true),
        ("startupProbe", &c.startup_probe, false),
    ];
    for (name, probe, may_succeed_more) in probes {
        if let Some(p) = probe {
            let pp = format!("{path}.{name}");
            if init && !sidecar {
                e.add(
                    pp.clone(),
                    "Forbidden: may not be set for init containers without restartPolicy=Always",
                );
            }
            validate_probe(p, &pp, may_succeed_more, &port_names, e);
        }
    }
    if c.lifecycle.is_some() && init && !sidecar {
        e.add(
            format!("{path}.lifecycle"),
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        );
    }
    if let Some(lc) = &c.lifecycle {
        for (name, h) in [("preStop", &lc.pre_stop), ("postStart", &lc.post_start)] {
            if let Some(h) = h {
                validate_handler(h, &format!("{path}.lifecycle.{name}"), &port_names, e);
            }
        }
    }
    if let Some(sc) = &c.security_context {
        super::security::validate_container_security(sc, path, e);
    }
    super::not_yet::validate_container(c, path, init, e);
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
