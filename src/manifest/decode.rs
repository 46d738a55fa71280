//! Bytes to a generic value, at a bounded cost whatever the bytes are.
//!
//! The kubelet caps a manifest at 10 MB, but 10 MB of YAML can cost far more than 10 MB to
//! parse: deeply nested flow collections (`[[[[...`), a list of five million items, or aliases
//! that expand to billions of nodes (billion laughs). A manifest is a few hundred nodes and a
//! dozen levels deep, so both are capped well above that and far below what hurts:
//!
//! - YAML is first streamed through libyaml's event parser without keeping anything, counting
//!   nodes and depth, and abandoned at the first limit. Only a stream that passes is handed to
//!   serde (whose loader keeps every event of a document in memory).
//! - The value is built by a visitor that counts every node it makes, aliases expanded, so
//!   neither an alias bomb nor a JSON document can grow it past the cap.

use super::{FieldError, MAX_MANIFEST_BYTES};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as _;
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;
use unsafe_libyaml_norway as unsafe_yaml;

/// Most nesting levels a manifest may have (a Pod in a PodList needs about 15).
pub const MAX_DEPTH: usize = 100;
/// Most nodes (scalars, keys, lists, mappings; aliases expanded) a manifest may have.
pub const MAX_NODES: usize = 100_000;

fn too_deep() -> String {
    format!("nested deeper than {MAX_DEPTH} levels; a Pod manifest needs about 15")
}

fn too_many() -> String {
    format!("more than {MAX_NODES} nodes (aliases expanded); a Pod manifest has a few hundred")
}

/// Decodes one document (YAML or JSON) into a generic value.
pub fn decode(bytes: &[u8]) -> Result<Value, FieldError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(FieldError::file(format!(
            "Too long: the manifest is {} bytes, larger than 10 MB (the kubelet's limit)",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FieldError::file(format!("cannot parse: not UTF-8 text ({e})")))?;
    let budget = Budget::default();
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = BoundedValue(&budget)
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|_| v))
            .map_err(|e| FieldError::file(format!("cannot parse as JSON: {e}")))?;
        return Ok(value);
    }
    yaml_shape(bytes).map_err(|e| FieldError::file(format!("cannot parse as YAML: {e}")))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = BoundedValue(&budget)
            .deserialize(doc)
            .map_err(|e| FieldError::file(format!("cannot parse as YAML: {e}")))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    match docs.len() {
        0 => Err(FieldError::file("cannot parse: the manifest is empty")),
        1 => Ok(docs.pop().unwrap_or_default()),
        n => Err(FieldError::file(format!(
            "cannot parse: more than one document ({n}); put one Pod per file"
        ))),
    }
}

/// Streams the YAML events of every document, keeping none, and fails at the first limit.
/// A syntax error ends the check quietly: serde reports it, with its position, from a prefix
/// that has just been checked.
fn yaml_shape(bytes: &[u8]) -> Result<(), String> {
    let Some(mut parser) = EventParser::new(bytes) else {
        return Ok(()); // libyaml could not allocate; serde's own attempt reports it
    };
    let (mut depth, mut nodes) = (0usize, 0usize);
    loop {
        let kind = match parser.next() {
            Some(k) => k,
            None => return Ok(()),
        };
        match kind {
            unsafe_yaml::YAML_STREAM_END_EVENT => return Ok(()),
            unsafe_yaml::YAML_SEQUENCE_START_EVENT | unsafe_yaml::YAML_MAPPING_START_EVENT => {
                depth += 1;
                nodes += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            unsafe_yaml::YAML_SEQUENCE_END_EVENT | unsafe_yaml::YAML_MAPPING_END_EVENT => {
                depth = depth.saturating_sub(1)
            }
            unsafe_yaml::YAML_SCALAR_EVENT | unsafe_yaml::YAML_ALIAS_EVENT => nodes += 1,
            _ => {}
        }
        if nodes > MAX_NODES {
            return Err(too_many());
        }
    }
}

/// libyaml's event parser over a byte slice, one event at a time.
struct EventParser<'a> {
    // Boxed: libyaml keeps a pointer to the parser itself (its read handler's data).
    parser: Box<std::mem::MaybeUninit<unsafe_yaml::yaml_parser_t>>,
    _input: &'a [u8],
}

impl<'a> EventParser<'a> {
    fn new(input: &'a [u8]) -> Option<EventParser<'a>> {
        let mut parser = Box::new(std::mem::MaybeUninit::<unsafe_yaml::yaml_parser_t>::uninit());
        // SAFETY: initialize fills the whole struct; the input outlives the parser (the
        // lifetime ties them) and the box keeps the parser's address fixed until drop.
        unsafe {
            let p = parser.as_mut_ptr();
            if unsafe_yaml::yaml_parser_initialize(p).fail {
                return None;
            }
            unsafe_yaml::yaml_parser_set_encoding(p, unsafe_yaml::YAML_UTF8_ENCODING);
            unsafe_yaml::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as u64);
        }
        Some(EventParser {
            parser,
            _input: input,
        })
    }

    /// The next event's type, or `None` on a syntax error (or past the end).
    fn next(&mut self) -> Option<unsafe_yaml::yaml_event_type_t> {
        let mut event = std::mem::MaybeUninit::<unsafe_yaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; a successfully parsed event is read
        // once and then released with yaml_event_delete, as libyaml requires.
        unsafe {
            let p = self.parser.as_mut_ptr();
            if unsafe_yaml::yaml_parser_parse(p, event.as_mut_ptr()).fail {
                return None;
            }
            let kind = (*event.as_ptr()).type_;
            unsafe_yaml::yaml_event_delete(event.as_mut_ptr());
            // After an error or the end of the stream, libyaml answers with no event.
            (kind != unsafe_yaml::YAML_NO_EVENT).then_some(kind)
        }
    }
}

impl Drop for EventParser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (a failed initialisation never builds the struct).
        unsafe { unsafe_yaml::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

/// What the value builder may still spend.
#[derive(Default)]
struct Budget {
    nodes: Cell<usize>,
    depth: Cell<usize>,
}

impl Budget {
    fn node<E: serde::de::Error>(&self) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        if self.nodes.get() > MAX_NODES {
            return Err(E::custom(too_many()));
        }
        Ok(())
    }
}

/// Builds a `serde_json::Value` exactly as its own `Deserialize` does (so pod hashes do not
/// change), counting nodes and depth as it goes.
#[derive(Clone, Copy)]
struct BoundedValue<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.0.node()?;
        d.deserialize_any(self)
    }
}

impl BoundedValue<'_> {
    fn nested<T, E: serde::de::Error>(self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let depth = self.0.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(too_deep()));
        }
        self.0.depth.set(depth);
        let r = f();
        self.0.depth.set(depth - 1);
        r
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        Number::deserialize(serde::de::value::I128Deserializer::<E>::new(v)).map(Value::Number)
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        Number::deserialize(serde::de::value::U128Deserializer::<E>::new(v)).map(Value::Number)
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.nested(|| {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(self)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.nested(|| {
            let mut out = Map::new();
            while let Some(key) = map.next_key_seed(Key)? {
                self.0.node()?;
                let value = map.next_value_seed(self)?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        })
    }
}

/// A mapping key, read as a string as `serde_json::Value` reads it.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_as_serde_json_builds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
        let mut n = 0;
        for sub in ["valid", "invalid"] {
            for e in std::fs::read_dir(dir.join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let Ok(text) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                let ours = decode(text.as_bytes()).ok();
                let theirs: Option<Value> = if text.trim_start().starts_with('{') {
                    serde_json::from_str(&text).ok()
                } else {
                    serde_yaml::from_str(&text).ok()
                };
                if let (Some(a), Some(b)) = (ours, theirs) {
                    assert_eq!(a, b, "{}", e.path().display());
                    n += 1;
                }
            }
        }
        assert!(n > 50, "{n} files compared");
        let odd =
            "a: 18446744073709551616\nb: -9223372036854775809\nc: .nan\nd: ~\n1: x\ne: !!str 5\n";
        assert_eq!(
            decode(odd.as_bytes()).ok(),
            serde_yaml::from_str::<Value>(odd).ok()
        );
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = format!("a: {}{}", "[".repeat(200), "]".repeat(200));
        assert!(decode(deep.as_bytes())
            .unwrap_err()
            .message
            .contains("nested deeper"));
        let deep_block: String = (0..150).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(decode(deep_block.as_bytes())
            .unwrap_err()
            .message
            .contains("nested deeper"));
        let deep_json = format!("{}1{}", "{\"a\":[".repeat(60), "]}".repeat(60));
        assert!(decode(deep_json.as_bytes())
            .unwrap_err()
            .message
            .contains("nested deeper"));
        let ok = format!("a: {}{}", "[".repeat(90), "]".repeat(90));
        assert!(decode(ok.as_bytes()).is_ok());
        let wide = format!("[{}1]", "1,".repeat(MAX_NODES));
        assert!(decode(wide.as_bytes())
            .unwrap_err()
            .message
            .contains("more than"));
        let wide_json = format!("{{\"a\": [{}1]}}", "1,".repeat(MAX_NODES));
        assert!(decode(wide_json.as_bytes())
            .unwrap_err()
            .message
            .contains("more than"));
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, c) in "bcdefghij".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            laughs.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        assert!(decode(laughs.as_bytes())
            .unwrap_err()
            .message
            .contains("aliases expanded"));
    }
}
