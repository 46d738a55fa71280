//! `downwardAPI` volumes, and projected volumes made of `downwardAPI` sources: files whose
//! content is a field of the pod (its name, namespace, UID, labels, annotations) or a
//! container's resource limit or request.
//!
//! A static pod's labels and annotations are part of its manifest, so a change to them is a
//! new pod (a new UID), whose files are written when its sandbox is set up: nothing needs
//! updating in place.

use super::pod::{FieldRef, ResourceFieldRef, Volume};
use serde::Deserialize;

/// One file of the volume.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DownwardFile {
    pub path: String,
    pub field_ref: Option<FieldRef>,
    pub resource_field_ref: Option<ResourceFieldRef>,
    #[serde(deserialize_with = "mode")]
    pub mode: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Items {
    items: Vec<DownwardFile>,
    #[serde(deserialize_with = "mode")]
    default_mode: Option<i64>,
}

/// A file mode as manifests write it: a number, or YAML 1.1's octal `0644`, which the
/// kubelet's YAML reads as 420 and the YAML 1.2 parser here hands over as text.
fn mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("invalid mode {n}"))),
        Some(serde_json::Value::String(s))
            if s.len() > 1
                && s.starts_with('0')
                && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
        {
            i64::from_str_radix(&s[1..], 8)
                .map(Some)
                .map_err(|_| D::Error::custom(format!("invalid mode {s:?}")))
        }
        Some(other) => Err(D::Error::custom(format!(
            "invalid mode {other}: a number (0644 in octal, or 420)"
        ))),
    }
}

/// The files of a `downwardAPI` or projected volume, with the mode each gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DownwardVolume {
    /// Each file, with the field path of its place in the manifest (for messages).
    pub files: Vec<(String, DownwardFile)>,
    pub default_mode: i64,
}

/// The API's default file mode of these volumes (0644).
pub const DEFAULT_MODE: i64 = 0o644;

impl DownwardVolume {
    /// Whether `v` is such a volume (what [`DownwardVolume::of`] reads), without decoding it.
    pub fn is(v: &Volume) -> bool {
        v.other.contains_key("downwardAPI")
            || v.other
                .get("projected")
                .and_then(|p| p.get("sources"))
                .is_some_and(|s| s.is_array())
    }

    /// `Some` for a `downwardAPI` volume or a projected volume with `downwardAPI` sources
    /// (`path` is the volume's field path, `spec.volumes[i]`); `Err` when one does not
    /// decode.
    pub fn of(v: &Volume, path: &str) -> Option<Result<DownwardVolume, String>> {
        let decode = |value: &serde_json::Value, at: &str| {
            serde_json::from_value::<Items>(value.clone()).map_err(|e| format!("{at}: {e}"))
        };
        if let Some(d) = v.other.get("downwardAPI") {
            let at = format!("{path}.downwardAPI");
            return Some(decode(d, &at).map(|items| DownwardVolume {
                default_mode: items.default_mode.unwrap_or(DEFAULT_MODE),
                files: numbered(&at, items.items),
            }));
        }
        let projected = v.other.get("projected")?;
        let sources = projected.get("sources")?.as_array()?;
        let mut out = DownwardVolume {
            files: Vec::new(),
            default_mode: match projected.get("defaultMode") {
                Some(m) => match mode(m.clone()) {
                    Ok(m) => m.unwrap_or(DEFAULT_MODE),
                    Err(e) => return Some(Err(format!("{path}.projected.defaultMode: {e}"))),
                },
                None => DEFAULT_MODE,
            },
        };
        for (i, s) in sources.iter().enumerate() {
            let Some(d) = s.get("downwardAPI") else {
                continue;
            };
            let at = format!("{path}.projected.sources[{i}].downwardAPI");
            match decode(d, &at) {
                Ok(items) => out.files.extend(numbered(&at, items.items)),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(out))
    }
}

fn numbered(at: &str, items: Vec<DownwardFile>) -> Vec<(String, DownwardFile)> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, f)| (format!("{at}.items[{i}]"), f))
        .collect()
}

/// The field paths a downwardAPI file may show (the API's list).
pub const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

pub fn volume_field_path_ok(path: &str) -> bool {
    VOLUME_FIELD_PATHS.contains(&path)
        || ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .any(|p| path.starts_with(p) && path.ends_with("']"))
}

/// A map as the kubelet writes `metadata.labels` and `metadata.annotations` (Go's
/// `fieldpath.FormatMap`): sorted `key="value"` lines, values quoted as Go's `%q` quotes
/// them, no newline after the last.
pub fn format_map(m: &std::collections::BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `strconv.Quote` for valid UTF-8: `\"`, `\\`, the C escapes, `\xNN` for other ASCII
/// control characters, `\uNNNN` for other non-printable characters.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_the_kubelet_reads_them() {
        let v: Items = serde_json::from_str(
            r#"{"defaultMode": "0644", "items": [{"path": "a", "mode": 256}]}"#,
        )
        .unwrap();
        assert_eq!(v.default_mode, Some(0o644));
        assert_eq!(v.items[0].mode, Some(0o400));
        assert!(serde_json::from_str::<Items>(r#"{"defaultMode": "0649"}"#).is_err());
        assert!(serde_json::from_str::<Items>(r#"{"defaultMode": "rw"}"#).is_err());
    }

    #[test]
    fn maps_are_written_as_the_kubelet_writes_them() {
        let m = [("b", "two \"quoted\"\n"), ("a", "ü\tx"), ("c", "\u{1}")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            format_map(&m),
            "a=\"ü\\tx\"\nb=\"two \\\"quoted\\\"\\n\"\nc=\"\\x01\""
        );
    }
}
