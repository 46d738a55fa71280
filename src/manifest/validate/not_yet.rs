//! Fields the kubelet honours and staticlet does not yet: each is refused by name, so that a
//! pod never runs doing something other than what its YAML says (issue 16). Fields that have
//! no meaning on a single node without an API server are refused elsewhere with the reason.
//!
//! Every message here reads `Unsupported value: <value>: <what> is not supported by
//! staticlet yet`, so that one search finds them all; README.md's "Pod fields" table quotes
//! them.

use super::{not_yet, unsupported, Errors};
use crate::manifest::pod::{Container, Pod, Volume};

pub(super) fn validate_spec(pod: &Pod, e: &mut Errors) {
    let s = &pod.spec;
    if let Some(d) = s
        .active_deadline_seconds
        .filter(|d| !(1..=i32::MAX as i64).contains(d))
    {
        e.add(
            "spec.activeDeadlineSeconds",
            format!("Invalid value: {d}: must be between 1 and 2147483647, inclusive"),
        );
    }
    if s.host_pid && s.share_process_namespace == Some(true) {
        e.add(
            "spec.securityContext.shareProcessNamespace",
            "Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
        );
    }
    if s.host_users == Some(false) {
        not_yet(
            e,
            "spec.hostUsers",
            "false",
            "hostUsers: false (user namespaces)",
        );
    }
    if s.readiness_gates.as_ref().is_some_and(non_empty) {
        not_yet(e, "spec.readinessGates", "[...]", "readinessGates");
    }
    if let Some(r) = s.runtime_class_name.as_deref().filter(|r| !r.is_empty()) {
        not_yet(
            e,
            "spec.runtimeClassName",
            &format!("{r:?}"),
            "runtimeClassName",
        );
    }
    if let Some(os) = &s.os {
        if os.name != "linux" {
            e.add("spec.os.name", unsupported(&os.name, &["linux"]));
        }
    }
    if s.resource_claims.as_ref().is_some_and(non_empty) {
        e.add(
            "spec.resourceClaims",
            "Forbidden: static pods may not reference resourceclaims",
        );
    }
    if s.resources.as_ref().is_some_and(non_empty) {
        not_yet(e, "spec.resources", "{...}", "pod-level resources");
    }
    if let Some(h) = s.hostname_override.as_deref() {
        not_yet(
            e,
            "spec.hostnameOverride",
            &format!("{h:?}"),
            "hostnameOverride",
        );
    }
}

fn non_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

pub(super) fn validate_container(c: &Container, path: &str, init: bool, e: &mut Errors) {
    if c.tty {
        not_yet(e, &format!("{path}.tty"), "true", "tty");
    }
    if c.stdin {
        not_yet(e, &format!("{path}.stdin"), "true", "stdin");
    }
    if c.stdin_once {
        not_yet(e, &format!("{path}.stdinOnce"), "true", "stdinOnce");
    }
    match (c.restart_policy.as_deref(), init) {
        (None, _) => {}
        (Some("Always"), true) => {}
        (Some(p), true) => e.add(format!("{path}.restartPolicy"), unsupported(p, &["Always"])),
        (Some(_), false) => e.add(
            format!("{path}.restartPolicy"),
            "Forbidden: may not be set for non-init containers",
        ),
    }
    if c.resources.claims.as_ref().is_some_and(non_empty) {
        e.add(
            format!("{path}.resources.claims"),
            "Forbidden: static pods may not reference resourceclaims",
        );
    }
    if c.restart_policy_rules.as_ref().is_some_and(non_empty) {
        not_yet(
            e,
            &format!("{path}.restartPolicyRules"),
            "[...]",
            "restartPolicyRules",
        );
    }
    if c.volume_devices.as_ref().is_some_and(non_empty) {
        e.add(
            format!("{path}.volumeDevices"),
            "Forbidden: static pods may not reference persistentvolumeclaims (volumeDevices need a block-mode claim)",
        );
    }
    for (name, p) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(g) = p.as_ref().and_then(|p| p.termination_grace_period_seconds) {
            not_yet(
                e,
                &format!("{path}.{name}.terminationGracePeriodSeconds"),
                &g.to_string(),
                "a probe's own terminationGracePeriodSeconds",
            );
        }
    }
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        if let Some(x) = m.sub_path_expr.as_deref() {
            not_yet(
                e,
                &format!("{mp}.subPathExpr"),
                &format!("{x:?}"),
                "subPathExpr",
            );
        }
        let privileged = c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        match m.mount_propagation.as_deref() {
            None | Some("None" | "HostToContainer") => {}
            Some("Bidirectional") if privileged => {}
            Some("Bidirectional") => e.add(
                format!("{mp}.mountPropagation"),
                "Forbidden: Bidirectional mount propagation is available only to privileged containers",
            ),
            Some(p) => e.add(
                format!("{mp}.mountPropagation"),
                unsupported(p, &["Bidirectional", "HostToContainer", "None"]),
            ),
        }
        match m.recursive_read_only.as_deref() {
            None | Some("Disabled") => {}
            Some(r @ ("IfPossible" | "Enabled")) => not_yet(
                e,
                &format!("{mp}.recursiveReadOnly"),
                &format!("{r:?}"),
                "recursiveReadOnly",
            ),
            Some(r) => e.add(
                format!("{mp}.recursiveReadOnly"),
                unsupported(r, &["Disabled", "Enabled", "IfPossible"]),
            ),
        }
    }
}

/// The volume sources beside hostPath and emptyDir: `downwardAPI`, and projected volumes of
/// `downwardAPI` sources (what static pods may not reference is refused by name); `true`
/// when the source was handled here.
pub(super) fn validate_volume(
    pod: &Pod,
    v: &Volume,
    path: &str,
    key: &str,
    e: &mut Errors,
) -> bool {
    match key {
        "downwardAPI" => {
            super::downward::validate(pod, v, path, e);
            true
        }
        "projected" => {
            let sources = v.other.get("projected").and_then(|p| p.get("sources"));
            for (i, src) in sources
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                let sp = format!("{path}.projected.sources[{i}]");
                let Some(obj) = src.as_object() else { continue };
                for k in obj.keys() {
                    match k.as_str() {
                        "downwardAPI" => {}
                        // Named at the volume, as the API server's NodeRestriction does.
                        "secret" => e.add(format!("{path}.projected"), "Forbidden: static pods may not reference secrets"),
                        "configMap" => e.add(format!("{path}.projected"), "Forbidden: static pods may not reference configmaps"),
                        "serviceAccountToken" => e.add(format!("{path}.projected"), "Forbidden: static pods may not reference projected service account tokens"),
                        "clusterTrustBundle" => e.add(format!("{path}.projected"), "Forbidden: static pods may not reference clustertrustbundles"),
                        other => e.add(format!("{sp}.{other}"), "Unsupported value: projected source not supported by staticlet"),
                    }
                }
            }
            if sources
                .and_then(|s| s.as_array())
                .is_none_or(|a| a.is_empty())
            {
                e.add(format!("{path}.projected.sources"), "Required value");
            }
            super::downward::validate(pod, v, path, e);
            true
        }
        _ => false,
    }
}

/// A size limit on a disk emptyDir: the kubelet enforces it by eviction, and its eviction
/// manager never evicts a static pod (`IsCriticalPod` is true for every static pod), so on a
/// kubelet the limit silently does nothing. Refused instead, saying so; a Memory emptyDir's
/// limit is the tmpfs size and is honoured. Called for a limit that is a valid quantity.
pub(super) fn validate_empty_dir_size(v: &Volume, path: &str, e: &mut Errors) {
    let Some(ed) = &v.empty_dir else { return };
    if ed.medium.as_deref().unwrap_or("").is_empty() {
        if let Some(q) = &ed.size_limit {
            e.add(
                format!("{path}.emptyDir.sizeLimit"),
                format!("Unsupported value: {:?}: a disk emptyDir's sizeLimit is enforced by evicting the pod, and the kubelet never evicts a static pod (it is critical), so it would not be enforced; use medium: Memory (a tmpfs of that size) or remove sizeLimit", q.as_text()),
            );
        }
    }
}
