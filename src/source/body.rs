//! A manifest URL's body: a `v1` Pod or PodList, split into one entry per pod.
//!
//! A gateway behind a captive portal or a proxy gets a 200 with somebody else's page. The
//! kubelet refuses a body that does not decode as a Pod or a PodList and keeps its pods; so
//! does staticlet, and the reason names what came instead.

use super::Entry;
use crate::manifest::{self, FieldError, ManifestError, Source};
use serde_json::Value;
use std::path::PathBuf;

/// Why a body is refused whole (the source's pods are kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is empty (a valid empty PodList removes the pods; an empty body does not)")]
    Empty,
    /// Not YAML or JSON at all; the parser's message.
    #[error("{0}")]
    Decode(String),
    /// Parsed, but not a `v1` Pod or PodList; says what came instead.
    #[error(
        "the body is not a Pod or a PodList ({0}); a captive portal or a proxy may have answered"
    )]
    NotPods(String),
    #[error("the body is not a Pod or a PodList (items[{index}] is {what}, not a Pod)")]
    NotPodItem { index: usize, what: &'static str },
    /// A PodList whose `items` cannot be used.
    #[error("{field}: {message}")]
    Items { field: String, message: String },
}

/// A body's pods, each with the fields the Pod API does not have: a single Pod, or the items
/// of a PodList. Anything else is refused whole, with the reason.
pub fn parse_body(
    body: &[u8],
    url: &str,
    node: &str,
) -> Result<Vec<(Entry, Vec<FieldError>)>, BodyError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(BodyError::Empty);
    }
    let value = manifest::decode(body).map_err(|e| BodyError::Decode(e.message))?;
    let items = pod_items(value)?;
    let source = Source::Url(url.to_string());
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let name = item["metadata"]["name"].as_str().map(String::from);
            let origin = match &name {
                Some(n) => PathBuf::from(format!("{url}#{ns}/{n}")),
                None => PathBuf::from(format!("{url}#items[{i}]")),
            };
            let unknown = manifest::schema::unknown_fields(&item);
            let result = manifest::build(item, &source, node).map_err(|errors| ManifestError {
                origin: origin.display().to_string(),
                errors,
            });
            (Entry { origin, result }, unknown)
        })
        .collect())
}

/// The pods of a body that is a `v1` Pod or PodList; the kubelet refuses anything else.
fn pod_items(value: Value) -> Result<Vec<Value>, BodyError> {
    let what = |v: &Value| match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
    let refused = match (value.is_object(), field("apiVersion"), field("kind")) {
        (true, "v1", "Pod") => return Ok(vec![value]),
        (true, "v1", "PodList") => None,
        (true, api, kind) => Some(format!("apiVersion {api:?}, kind {kind:?}")),
        (false, _, _) => Some(format!("it is {}", what(&value))),
    };
    if let Some(what) = refused {
        return Err(BodyError::NotPods(what));
    }
    let items = manifest::split_pod_list(value).map_err(|e| BodyError::Items {
        field: e.field.to_string(),
        message: e.message.to_string(),
    })?;
    if let Some((index, item)) = items.iter().enumerate().find(|(_, v)| !v.is_object()) {
        return Err(BodyError::NotPodItem {
            index,
            what: what(item),
        });
    }
    Ok(items)
}
