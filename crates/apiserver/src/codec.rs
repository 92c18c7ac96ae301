//! How objects are laid out in the store and put back on the wire.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`: the store's revision is the
//! resourceVersion, so it is spliced in when an object leaves. To make splicing a cheap copy
//! rather than a parse and re-serialise (LIST of 10,000 objects must stay fast), stored JSON
//! always begins `{"apiVersion":…,"kind":…,"metadata":{`, so the top-level metadata is the
//! first `"metadata":{` in the bytes: every earlier string value is escaped and cannot contain
//! the unescaped key.

use bytes::Bytes;
use serde_json::{Map, Value};

const METADATA_KEY: &[u8] = b"\"metadata\":{";

/// Brings `obj` to its stored layout in place (apiVersion, kind and metadata first,
/// resourceVersion removed, empty metadata collections dropped) and serialises it. Values are
/// moved, not cloned: writes are the apiserver's hot path.
pub fn encode(obj: &mut Value) -> Bytes {
    if let Value::Object(map) = obj {
        let mut rest = std::mem::take(map);
        let mut out = Map::new();
        for key in ["apiVersion", "kind", "metadata"] {
            if let Some(v) = rest.shift_remove(key) {
                out.insert(key.to_string(), v);
            }
        }
        match out.get_mut("metadata") {
            Some(Value::Object(meta)) => {
                meta.shift_remove("resourceVersion");
                // Empty collections are dropped, as Go's `omitempty` drops them upstream.
                meta.retain(|k, v| {
                    !(matches!(
                        k.as_str(),
                        "labels"
                            | "annotations"
                            | "finalizers"
                            | "ownerReferences"
                            | "managedFields"
                    ) && (v.is_null()
                        || v.as_array().is_some_and(Vec::is_empty)
                        || v.as_object().is_some_and(Map::is_empty)))
                });
            }
            _ => {
                out.insert("metadata".into(), Value::Object(Map::new()));
            }
        }
        out.extend(rest);
        *map = out;
    }
    Bytes::from(serde_json::to_vec(obj).unwrap_or_else(|_| b"{}".to_vec()))
}

/// `obj`, just stored by [`encode`], as it reads back at revision `rv`.
pub fn stored(mut obj: Value, rv: i64) -> Value {
    rkube_core::meta::set_str(&mut obj, "resourceVersion", rv.to_string());
    obj
}

/// Appends the stored `bytes` to `out` with `resourceVersion` set to `rv`.
pub fn write_with_rv(out: &mut Vec<u8>, bytes: &[u8], rv: i64) {
    match find(bytes, METADATA_KEY) {
        Some(at) => {
            let split = at + METADATA_KEY.len();
            out.extend_from_slice(&bytes[..split]);
            out.extend_from_slice(b"\"resourceVersion\":\"");
            out.extend_from_slice(rv.to_string().as_bytes());
            out.push(b'"');
            if bytes.get(split) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&bytes[split..]);
        }
        None => out.extend_from_slice(bytes),
    }
}

/// The stored bytes with `resourceVersion` spliced in.
pub fn with_rv(bytes: &[u8], rv: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    write_with_rv(&mut out, bytes, rv);
    out
}

/// Parses stored bytes into an object with its resourceVersion.
pub fn decode(bytes: &[u8], rv: i64) -> Value {
    let mut v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    rkube_core::meta::set_str(&mut v, "resourceVersion", rv.to_string());
    v
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_splices_resource_version() {
        let mut obj = json!({"data": {"metadata":{"x":1}}, "kind": "ConfigMap", "apiVersion": "v1",
                         "metadata": {"name": "a", "resourceVersion": "7"}});
        let stored = encode(&mut obj);
        assert_eq!(super::stored(obj, 42), decode(&stored, 42));
        assert!(
            stored.starts_with(b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{")
        );
        assert!(!String::from_utf8_lossy(&stored).contains("\"7\""));
        let wire: Value = serde_json::from_slice(&with_rv(&stored, 42)).unwrap();
        assert_eq!(wire["metadata"]["resourceVersion"], "42");
        assert_eq!(wire["metadata"]["name"], "a");
        assert_eq!(wire["data"]["metadata"]["x"], 1);
        assert_eq!(decode(&stored, 42), wire);
    }

    #[test]
    fn empty_metadata_collections_are_dropped() {
        let stored = encode(
            &mut json!({"metadata": {"name": "a", "finalizers": [], "labels": {}, "annotations": null}}),
        );
        assert_eq!(
            decode(&stored, 1)["metadata"],
            json!({"name": "a", "resourceVersion": "1"})
        );
    }

    #[test]
    fn empty_metadata() {
        let stored = encode(&mut json!({"apiVersion": "v1", "kind": "X"}));
        let wire: Value = serde_json::from_slice(&with_rv(&stored, 3)).unwrap();
        assert_eq!(wire["metadata"], json!({"resourceVersion": "3"}));
    }
}
