//! Manifests: bytes from a source become a validated [`StaticPod`] with the kubelet's
//! defaults (name suffix, namespace, node name, UID/hash, annotations, toleration).
//!
//! Everything here is pure: no I/O and no clock. The first-seen time is stamped by the
//! desired pod set, which owns the clock.

mod decode;
pub mod downward;
pub mod pod;
pub mod policy;
pub mod quantity;
pub mod schema;
pub mod validate;

pub use decode::{decode, MAX_DEPTH, MAX_NODES};
pub use policy::{PullPolicy, RestartPolicy};

use pod::Pod;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// The kubelet's cap on a manifest file or URL body.
pub const MAX_MANIFEST_BYTES: usize = 10 * 1024 * 1024;

pub const ANN_HASH: &str = "kubernetes.io/config.hash";
pub const ANN_SOURCE: &str = "kubernetes.io/config.source";
pub const ANN_SEEN: &str = "kubernetes.io/config.seen";
pub const ANN_MIRROR: &str = "kubernetes.io/config.mirror";
/// The annotation that opts a pod into the health-gated rollback, with its trial's length.
pub const ROLLBACK_AFTER: &str = "staticlet.dev/rollback-after";

/// One problem in one manifest: the field path (Kubernetes syntax) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
    fn file(message: impl Into<String>) -> Self {
        FieldError::new("(file)", message)
    }
}

/// Every problem found in one manifest, with the place it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub origin: String,
    pub errors: Vec<FieldError>,
}

/// One line per error: `<origin>: <field>: <message>`. Values from the manifest (a file name,
/// a map key in a field path, a parser's quote of the input) are escaped, so a line break in
/// them can never start a line of its own in `validate`'s output or in the log.
impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::sys::logging::escape;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: {}: {}",
                escape(&self.origin),
                escape(&e.field),
                escape(&e.message)
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

/// Where a static pod came from; part of its UID, as in the kubelet.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    /// The value of the `kubernetes.io/config.source` annotation.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::File(_) => "file",
            Source::Url(_) => "http",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => write!(f, "{u}"),
        }
    }
}

/// A validated pod with the static-pod defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// The typed view, used to run the pod.
    pub pod: Pod,
    /// The decoded manifest with the defaults applied, used for mirror pods and status.
    pub raw: Value,
    pub source: Source,
}

impl StaticPod {
    pub fn uid(&self) -> &str {
        &self.pod.metadata.uid
    }
    pub fn name(&self) -> &str {
        &self.pod.metadata.name
    }
    pub fn namespace(&self) -> &str {
        &self.pod.metadata.namespace
    }
    /// `namespace/name`, as every log line names a pod.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }
    pub fn seen(&self) -> Option<&str> {
        self.pod
            .metadata
            .annotations
            .get(ANN_SEEN)
            .map(String::as_str)
    }
    /// The container at `index`, counting init containers first (the order they run in).
    pub fn container(&self, index: usize) -> &pod::Container {
        let spec = &self.pod.spec;
        let n = spec.init_containers.len();
        if index < n {
            &spec.init_containers[index]
        } else {
            &spec.containers[index - n]
        }
    }

    /// Every container, init containers first: the order [`StaticPod::container`] counts.
    pub fn containers(&self) -> impl Iterator<Item = &pod::Container> {
        let spec = &self.pod.spec;
        spec.init_containers.iter().chain(&spec.containers)
    }

    /// Stamps the first-seen annotation (not part of the hash).
    pub fn set_seen(&mut self, when: &str) {
        self.pod
            .metadata
            .annotations
            .insert(ANN_SEEN.into(), when.into());
        self.raw["metadata"]["annotations"][ANN_SEEN] = json!(when);
    }
}

/// Splits a URL body into its pods: a single Pod or the items of a PodList.
pub fn split_pod_list(value: Value) -> Result<Vec<Value>, FieldError> {
    if value.get("kind").and_then(Value::as_str) == Some("PodList") {
        match value.get("items") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(FieldError::new(
                "items",
                "invalid type: must be a list of Pods",
            )),
        }
    } else {
        Ok(vec![value])
    }
}

/// Validates one decoded pod and applies the static-pod defaults for `node`.
pub fn build(value: Value, source: &Source, node: &str) -> Result<StaticPod, Vec<FieldError>> {
    if !value.is_object() {
        return Err(vec![FieldError::file(
            "cannot parse: a Pod manifest must be a mapping",
        )]);
    }
    let pod: Pod = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "(file)".to_string()
        } else {
            path
        };
        vec![FieldError::new(field, e.into_inner().to_string())]
    })?;
    let errors = validate::validate(&pod, node);
    if !errors.is_empty() {
        return Err(errors);
    }
    let uid = pod_hash(&value, source, node);
    let raw = apply_defaults(value, &pod, source, node, &uid);
    let pod: Pod = serde_json::from_value(raw.clone()).map_err(|e| {
        vec![FieldError::file(format!(
            "internal error applying defaults: {e}"
        ))]
    })?;
    Ok(StaticPod {
        pod,
        raw,
        source: source.clone(),
    })
}

/// Decodes, validates and defaults the manifest of a file source in one step.
pub fn load(bytes: &[u8], source: &Source, node: &str) -> Result<StaticPod, ManifestError> {
    load_checked(bytes, source, node).0
}

/// As [`load`], plus the fields of the manifest that the Pod API does not have (typos such as
/// `comand`), which the kubelet ignores and `validate --strict` refuses.
pub fn load_checked(
    bytes: &[u8],
    source: &Source,
    node: &str,
) -> (Result<StaticPod, ManifestError>, Vec<FieldError>) {
    let origin = source.to_string();
    let value = match decode(bytes) {
        Ok(v) => v,
        Err(e) => {
            let err = ManifestError {
                origin,
                errors: vec![e],
            };
            return (Err(err), Vec::new());
        }
    };
    let unknown = schema::unknown_fields(&value);
    let result = build(value, source, node).map_err(|errors| ManifestError { origin, errors });
    (result, unknown)
}

/// The pod's UID and `config.hash`: SHA-256 over the canonical JSON of the decoded manifest
/// (keys sorted, so formatting and key order do not matter) and the source, first 16 bytes
/// in hex. File pods also hash the node name, as the kubelet does; URL pods do not, so every
/// gateway fed by one URL gives a pod the same UID.
pub fn pod_hash(value: &Value, source: &Source, node: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(value).unwrap_or_default());
    match source {
        Source::File(p) => {
            h.update(format!("\nhost:{node}\nfile:{}", p.display()));
        }
        Source::Url(u) => h.update(format!("\nurl:{u}")),
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn apply_defaults(mut raw: Value, pod: &Pod, source: &Source, node: &str, uid: &str) -> Value {
    let namespace = if pod.metadata.namespace.is_empty() {
        "default"
    } else {
        &pod.metadata.namespace
    };
    let meta = &mut raw["metadata"];
    meta["name"] = json!(format!("{}-{node}", pod.metadata.name));
    meta["namespace"] = json!(namespace);
    meta["uid"] = json!(uid);
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][ANN_HASH] = json!(uid);
    meta["annotations"][ANN_SOURCE] = json!(source.kind());
    let spec = &mut raw["spec"];
    spec["nodeName"] = json!(node);
    if matches!(source, Source::File(_)) {
        let toleration = json!({"operator": "Exists", "effect": "NoExecute"});
        match spec["tolerations"].as_array_mut() {
            Some(list) if !list.contains(&toleration) => list.push(toleration),
            Some(_) => {}
            None => spec["tolerations"] = json!([toleration]),
        }
    }
    raw
}

#[cfg(test)]
mod tests;
