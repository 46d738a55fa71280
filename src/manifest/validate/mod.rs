//! Validation of a decoded Pod, with the kubelet's rules for static pods.
//!
//! Every error carries the field path in Kubernetes syntax and a message phrased like the API
//! server's, so users can search for it. Names are checked here before they are ever used to
//! build a filesystem path.

mod container;
mod downward;
mod env;
mod names;
mod network;
mod not_yet;
mod security;

pub use names::{
    capability_name, is_dns1123_label, is_dns1123_subdomain, CAPABILITIES, FIELD_PATHS,
};
pub use security::{normalize_sysctl, sysctl_namespace, SysctlNamespace};

use super::pod::{Pod, QuantityValue};
use super::quantity::Quantity;
use super::FieldError;
use container::validate_container;
use names::{is_label_key, is_label_value, MAX_NAME};
use std::collections::BTreeSet;

pub(super) fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}

/// A field the kubelet honours and staticlet refuses for now (see [`not_yet`]).
pub(super) fn not_yet(e: &mut Errors, field: &str, value: &str, what: &str) {
    e.add(
        field,
        format!("Unsupported value: {value}: {what} is not supported by staticlet yet"),
    );
}

pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
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
    let rollback = super::ROLLBACK_AFTER;
    if let Some(v) = pod.metadata.annotations.get(rollback) {
        let v = v.trim();
        if !matches!(v, "0" | "off")
            && crate::sys::timefmt::parse_duration(v).is_none_or(|d| d.is_zero())
        {
            e.add(
                format!("metadata.annotations[{rollback}]"),
                format!("Invalid value: {v:?}: a duration such as 120s or 5m (0 or off: no rollback for this pod)"),
            );
        }
    }
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
    security::validate_pod_security(pod, e);
    not_yet::validate_spec(pod, e);
    if let Some(h) = &s.hostname {
        if !is_dns1123_label(h) {
            e.add(
                "spec.hostname",
                format!("Invalid value: {h:?}: must be a DNS-1123 label"),
            );
        }
    }
    network::validate_network(s, e);
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
            validate_container(pod, c, &path, &volumes, kind == "initContainers", e);
        }
    }
}

pub(super) fn non_negative(e: &mut Errors, field: &str, v: Option<i64>) {
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
                if check_quantity(e, &format!("{path}.emptyDir.sizeLimit"), q).is_some() {
                    not_yet::validate_empty_dir_size(v, &path, e);
                }
            }
        }
        for key in v.other.keys() {
            if not_yet::validate_volume(pod, v, &path, key, e) {
                continue;
            }
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

pub(super) fn check_quantity(e: &mut Errors, field: &str, q: &QuantityValue) -> Option<Quantity> {
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
