//! The field names of Kubernetes' `v1` Pod, to find unknown fields (`comand`).
//!
//! The kubelet ignores unknown fields and so does staticlet, but a typo in a field name is the
//! commonest manifest bug, and `kubectl --validate=strict` refuses them. staticlet reads only a
//! subset of the Pod (see [`super::pod`]), so the typed structs cannot tell a typo from a field
//! staticlet merely ignores (`affinity`, `dnsPolicy`): this table lists every field of the
//! Pod API (Kubernetes 1.34). Parts staticlet never looks into (affinity, secrets, ...) are
//! `Any`: their insides are not checked, so a field added there later is never flagged.

use super::FieldError;
use serde_json::Value;

/// At most this many unknown fields are named per manifest; the rest are counted.
const MAX_REPORTED: usize = 20;

#[derive(Clone, Copy)]
enum Ty {
    /// A scalar, a map of free keys (labels), or an object not looked into.
    Any,
    Obj(&'static [(&'static str, Ty)]),
    List(&'static Ty),
}

use Ty::{Any, List, Obj};

const POD_LIST: &[(&str, Ty)] = &[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", Any),
    ("items", List(&Obj(POD))),
];

const POD: &[(&str, Ty)] = &[
    ("apiVersion", Any),
    ("kind", Any),
    ("metadata", Obj(META)),
    ("spec", Obj(SPEC)),
    ("status", Any),
];

const META: &[(&str, Ty)] = &[
    ("name", Any),
    ("generateName", Any),
    ("namespace", Any),
    ("selfLink", Any),
    ("uid", Any),
    ("resourceVersion", Any),
    ("generation", Any),
    ("creationTimestamp", Any),
    ("deletionTimestamp", Any),
    ("deletionGracePeriodSeconds", Any),
    ("labels", Any),
    ("annotations", Any),
    ("ownerReferences", Any),
    ("finalizers", Any),
    ("managedFields", Any),
];

const SPEC: &[(&str, Ty)] = &[
    ("volumes", List(&Obj(VOLUME))),
    ("initContainers", List(&Obj(CONTAINER))),
    ("containers", List(&Obj(CONTAINER))),
    ("ephemeralContainers", Any),
    ("restartPolicy", Any),
    ("terminationGracePeriodSeconds", Any),
    ("activeDeadlineSeconds", Any),
    ("dnsPolicy", Any),
    ("nodeSelector", Any),
    ("serviceAccountName", Any),
    ("serviceAccount", Any),
    ("automountServiceAccountToken", Any),
    ("nodeName", Any),
    ("hostNetwork", Any),
    ("hostPID", Any),
    ("hostIPC", Any),
    ("shareProcessNamespace", Any),
    ("securityContext", Obj(POD_SECURITY)),
    ("imagePullSecrets", Any),
    ("hostname", Any),
    ("hostnameOverride", Any),
    ("subdomain", Any),
    ("affinity", Any),
    ("schedulerName", Any),
    ("tolerations", List(&Obj(TOLERATION))),
    (
        "hostAliases",
        List(&Obj(&[("ip", Any), ("hostnames", Any)])),
    ),
    ("priorityClassName", Any),
    ("priority", Any),
    (
        "dnsConfig",
        Obj(&[("nameservers", Any), ("searches", Any), ("options", Any)]),
    ),
    ("readinessGates", Any),
    ("runtimeClassName", Any),
    ("enableServiceLinks", Any),
    ("preemptionPolicy", Any),
    ("overhead", Any),
    ("topologySpreadConstraints", Any),
    ("setHostnameAsFQDN", Any),
    ("os", Obj(&[("name", Any)])),
    ("hostUsers", Any),
    ("schedulingGates", Any),
    ("resourceClaims", Any),
    ("resources", Obj(RESOURCES)),
];

const POD_SECURITY: &[(&str, Ty)] = &[
    ("seLinuxOptions", Any),
    ("windowsOptions", Any),
    ("runAsUser", Any),
    ("runAsGroup", Any),
    ("runAsNonRoot", Any),
    ("supplementalGroups", Any),
    ("supplementalGroupsPolicy", Any),
    ("fsGroup", Any),
    ("sysctls", Any),
    ("fsGroupChangePolicy", Any),
    ("seccompProfile", Any),
    ("appArmorProfile", Any),
    ("seLinuxChangePolicy", Any),
];

const TOLERATION: &[(&str, Ty)] = &[
    ("key", Any),
    ("operator", Any),
    ("value", Any),
    ("effect", Any),
    ("tolerationSeconds", Any),
];

const CONTAINER: &[(&str, Ty)] = &[
    ("name", Any),
    ("image", Any),
    ("command", Any),
    ("args", Any),
    ("workingDir", Any),
    ("ports", List(&Obj(PORT))),
    ("envFrom", List(&Obj(ENV_FROM))),
    ("env", List(&Obj(ENV))),
    ("resources", Obj(RESOURCES)),
    ("resizePolicy", Any),
    ("restartPolicy", Any),
    ("restartPolicyRules", Any),
    ("volumeMounts", List(&Obj(MOUNT))),
    ("volumeDevices", Any),
    ("livenessProbe", Obj(PROBE)),
    ("readinessProbe", Obj(PROBE)),
    ("startupProbe", Obj(PROBE)),
    ("lifecycle", Obj(LIFECYCLE)),
    ("terminationMessagePath", Any),
    ("terminationMessagePolicy", Any),
    ("imagePullPolicy", Any),
    ("securityContext", Obj(SECURITY)),
    ("stdin", Any),
    ("stdinOnce", Any),
    ("tty", Any),
];

const PORT: &[(&str, Ty)] = &[
    ("name", Any),
    ("hostPort", Any),
    ("containerPort", Any),
    ("protocol", Any),
    ("hostIP", Any),
];

const ENV: &[(&str, Ty)] = &[
    ("name", Any),
    ("value", Any),
    (
        "valueFrom",
        Obj(&[
            ("fieldRef", Obj(&[("apiVersion", Any), ("fieldPath", Any)])),
            (
                "resourceFieldRef",
                Obj(&[("containerName", Any), ("resource", Any), ("divisor", Any)]),
            ),
            ("configMapKeyRef", Any),
            ("secretKeyRef", Any),
            ("fileKeyRef", Any),
        ]),
    ),
];

const ENV_FROM: &[(&str, Ty)] = &[("prefix", Any), ("configMapRef", Any), ("secretRef", Any)];

const RESOURCES: &[(&str, Ty)] = &[("limits", Any), ("requests", Any), ("claims", Any)];

const MOUNT: &[(&str, Ty)] = &[
    ("name", Any),
    ("readOnly", Any),
    ("recursiveReadOnly", Any),
    ("mountPath", Any),
    ("subPath", Any),
    ("mountPropagation", Any),
    ("subPathExpr", Any),
];

const EXEC: Ty = Obj(&[("command", Any)]);
const TCP: Ty = Obj(&[("host", Any), ("port", Any)]);
const HTTP_GET: Ty = Obj(&[
    ("path", Any),
    ("port", Any),
    ("host", Any),
    ("scheme", Any),
    ("httpHeaders", List(&Obj(&[("name", Any), ("value", Any)]))),
]);

const PROBE: &[(&str, Ty)] = &[
    ("exec", EXEC),
    ("httpGet", HTTP_GET),
    ("tcpSocket", TCP),
    ("grpc", Obj(&[("port", Any), ("service", Any)])),
    ("initialDelaySeconds", Any),
    ("timeoutSeconds", Any),
    ("periodSeconds", Any),
    ("successThreshold", Any),
    ("failureThreshold", Any),
    ("terminationGracePeriodSeconds", Any),
];

const HANDLER: &[(&str, Ty)] = &[
    ("exec", EXEC),
    ("httpGet", HTTP_GET),
    ("tcpSocket", TCP),
    ("sleep", Obj(&[("seconds", Any)])),
];

const LIFECYCLE: &[(&str, Ty)] = &[
    ("postStart", Obj(HANDLER)),
    ("preStop", Obj(HANDLER)),
    ("stopSignal", Any),
];

const SECURITY: &[(&str, Ty)] = &[
    ("capabilities", Obj(&[("add", Any), ("drop", Any)])),
    ("privileged", Any),
    ("seLinuxOptions", Any),
    ("windowsOptions", Any),
    ("runAsUser", Any),
    ("runAsGroup", Any),
    ("runAsNonRoot", Any),
    ("readOnlyRootFilesystem", Any),
    ("allowPrivilegeEscalation", Any),
    ("procMount", Any),
    ("seccompProfile", Any),
    ("appArmorProfile", Any),
];

const VOLUME: &[(&str, Ty)] = &[
    ("name", Any),
    ("hostPath", Obj(&[("path", Any), ("type", Any)])),
    ("emptyDir", Obj(&[("medium", Any), ("sizeLimit", Any)])),
    ("gcePersistentDisk", Any),
    ("awsElasticBlockStore", Any),
    ("gitRepo", Any),
    ("secret", Any),
    ("nfs", Any),
    ("iscsi", Any),
    ("glusterfs", Any),
    ("persistentVolumeClaim", Any),
    ("rbd", Any),
    ("flexVolume", Any),
    ("cinder", Any),
    ("cephfs", Any),
    ("flocker", Any),
    ("downwardAPI", Any),
    ("fc", Any),
    ("azureFile", Any),
    ("configMap", Any),
    ("vsphereVolume", Any),
    ("quobyte", Any),
    ("azureDisk", Any),
    ("photonPersistentDisk", Any),
    ("projected", Any),
    ("portworxVolume", Any),
    ("scaleIO", Any),
    ("storageos", Any),
    ("csi", Any),
    ("ephemeral", Any),
    ("image", Any),
];

/// Every field of `value` (a Pod, or a PodList) that the Pod API does not have, by path
/// (`spec.containers[0].comand`). Values of the wrong type are validation's business.
pub fn unknown_fields(value: &Value) -> Vec<FieldError> {
    let root = if value.get("kind").and_then(Value::as_str) == Some("PodList") {
        POD_LIST
    } else {
        POD
    };
    let mut found = Found::default();
    walk(value, Obj(root), &mut String::new(), &mut found);
    let mut out = found.named;
    if found.more > 0 {
        out.push(FieldError::new(
            "(file)",
            format!("{} more unknown field(s)", found.more),
        ));
    }
    out
}

#[derive(Default)]
struct Found {
    named: Vec<FieldError>,
    more: usize,
}

fn walk(value: &Value, ty: Ty, path: &mut String, found: &mut Found) {
    match (ty, value) {
        (Obj(fields), Value::Object(map)) => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match fields.iter().find(|(name, _)| name == key) {
                    Some((_, t)) => walk(child, *t, path, found),
                    None if found.named.len() < MAX_REPORTED => found.named.push(FieldError::new(
                        path.clone(),
                        format!("unknown field {key:?}"),
                    )),
                    None => found.more += 1,
                }
                path.truncate(len);
            }
        }
        (List(item), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(child, *item, path, found);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The Pod API's types by name, for [`field_rows`]: a field of one of these types is listed
/// under the type's name (`Container.image`), whatever path leads to it.
const NAMED: &[(&str, &[(&str, Ty)])] = &[
    ("Pod", POD),
    ("ObjectMeta", META),
    ("PodSpec", SPEC),
    ("PodSecurityContext", POD_SECURITY),
    ("Toleration", TOLERATION),
    ("Container", CONTAINER),
    ("ContainerPort", PORT),
    ("EnvVar", ENV),
    ("EnvFromSource", ENV_FROM),
    ("ResourceRequirements", RESOURCES),
    ("VolumeMount", MOUNT),
    ("Probe", PROBE),
    ("LifecycleHandler", HANDLER),
    ("Lifecycle", LIFECYCLE),
    ("SecurityContext", SECURITY),
    ("Volume", VOLUME),
];

fn type_name(fields: &[(&str, Ty)]) -> Option<&'static str> {
    NAMED.iter().find_map(|(name, named)| {
        let same = named.len() == fields.len() && named.iter().zip(fields).all(|(a, b)| a.0 == b.0);
        same.then_some(*name)
    })
}

/// Every field the manifest parser accepts without a warning, as `Type.field` or
/// `Type.field.inner` (`Container.securityContext`, `SecurityContext.capabilities.add`), each
/// once. README.md's "Pod fields" table must have a row for each (tests/conformance.rs), so
/// that no field can be accepted and silently ignored.
pub fn field_rows() -> Vec<String> {
    let mut rows = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    collect(POD, "Pod", &mut rows, &mut seen);
    rows.into_iter().collect()
}

fn collect(
    fields: &[(&str, Ty)],
    prefix: &str,
    rows: &mut std::collections::BTreeSet<String>,
    seen: &mut std::collections::BTreeSet<&'static str>,
) {
    for (name, ty) in fields {
        let path = format!("{prefix}.{name}");
        rows.insert(path.clone());
        let inner = match ty {
            Obj(f) => Some(*f),
            List(Obj(f)) => Some(*f),
            _ => None,
        };
        let Some(inner) = inner else { continue };
        match type_name(inner) {
            Some(t) if seen.insert(t) => collect(inner, t, rows, seen),
            Some(_) => {}
            None => collect(inner, &path, rows, seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_are_named_by_path() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "lables": {}},
            "spec": {"containers": [{"name": "c", "comand": ["x"], "livenessProbe": {"httpGet": {"port": 1, "pth": "/"}}}],
                     "affinity": {"anything": {"goes": 1}}, "dnsPolicy": "ClusterFirst"}});
        let fields: Vec<String> = unknown_fields(&pod).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "metadata.lables",
                "spec.containers[0].comand",
                "spec.containers[0].livenessProbe.httpGet.pth"
            ]
        );
        let list = json!({"kind": "PodList", "items": [{"kind": "Pod", "spek": {}}]});
        assert_eq!(unknown_fields(&list)[0].field, "items[0].spek");
    }

    #[test]
    fn many_unknown_fields_are_counted_not_listed() {
        let map: serde_json::Map<String, Value> =
            (0..1000).map(|i| (format!("f{i}"), json!(1))).collect();
        let errs = unknown_fields(&Value::Object(map));
        assert_eq!(errs.len(), MAX_REPORTED + 1);
        assert!(errs[MAX_REPORTED].message.contains("980 more"));
    }
}
