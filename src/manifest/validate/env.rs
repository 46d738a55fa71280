//! `env[].valueFrom.resourceFieldRef`: the resources it may name and the divisors the API
//! server allows for each, with its messages.

use super::{check_quantity, unsupported, Errors};
use crate::manifest::pod::{Pod, ResourceFieldRef};
use crate::manifest::quantity::Quantity;

/// The resources a `resourceFieldRef` may name (hugepages are not container resources here).
pub const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

/// The divisors the API server accepts, by the kind of resource, in milli-units.
fn divisor_allowed(resource: &str, divisor: Quantity) -> bool {
    let m = divisor.milli();
    if resource.ends_with(".cpu") {
        return m == 1 || m == 1000;
    }
    let decimal = (0..=5).map(|p| 1000 * 1000_i128.pow(p));
    let binary = (1..=5).map(|p| 1000 * 1024_i128.pow(p));
    decimal.chain(binary).any(|v| v == m)
}

pub(super) fn validate_resource_field_ref(
    pod: &Pod,
    r: &ResourceFieldRef,
    path: &str,
    e: &mut Errors,
) {
    if r.resource.is_empty() {
        e.add(format!("{path}.resource"), "Required value");
        return;
    }
    if !RESOURCE_FIELDS.contains(&r.resource.as_str()) {
        e.add(
            format!("{path}.resource"),
            unsupported(&r.resource, RESOURCE_FIELDS),
        );
        return;
    }
    if let Some(name) = r.container_name.as_deref().filter(|n| !n.is_empty()) {
        let spec = &pod.spec;
        if !spec
            .containers
            .iter()
            .chain(&spec.init_containers)
            .any(|c| c.name == name)
        {
            e.add(
                format!("{path}.containerName"),
                format!("Not found: {name:?}: no container of that name in the pod"),
            );
        }
    }
    let Some(d) = &r.divisor else { return };
    let field = format!("{path}.divisor");
    let Some(q) = check_quantity(e, &field, d) else {
        return;
    };
    // A zero divisor is the API's "unset" and means 1.
    if q.milli() != 0 && !divisor_allowed(&r.resource, q) {
        let message = if r.resource.ends_with(".cpu") {
            "only divisor's values 1m and 1 are supported with the cpu resource"
        } else {
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi are supported with the memory and ephemeral-storage resources"
        };
        e.add(
            field,
            format!("Invalid value: {:?}: {message}", d.as_text()),
        );
    }
}
