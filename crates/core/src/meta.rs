//! Reading and writing `ObjectMeta` fields inside an untyped JSON object.
//!
//! The apiserver handles every kind generically as JSON; these helpers keep the JSON
//! pointer strings in one place.

use serde_json::{Map, Value};

/// `metadata.name`, or "".
pub fn name(obj: &Value) -> &str {
    str_at(obj, "name")
}

/// `metadata.namespace`, or "".
pub fn namespace(obj: &Value) -> &str {
    str_at(obj, "namespace")
}

/// `metadata.resourceVersion`, or "".
pub fn resource_version(obj: &Value) -> &str {
    str_at(obj, "resourceVersion")
}

/// `metadata.uid`, or "".
pub fn uid(obj: &Value) -> &str {
    str_at(obj, "uid")
}

/// `metadata.<field>` as a string, or "".
pub fn str_at<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The `metadata` object, created if missing (or replaced if not an object).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object")
}

/// Sets `metadata.<field>` to a string.
pub fn set_str(obj: &mut Value, field: &str, value: impl Into<String>) {
    metadata_mut(obj).insert(field.into(), Value::String(value.into()));
}

/// `metadata.labels` as (key, value) pairs; non-string values are skipped.
pub fn labels(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    string_map(obj, "labels")
}

/// `metadata.annotations` as (key, value) pairs.
pub fn annotations(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    string_map(obj, "annotations")
}

fn string_map<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (&'a str, &'a str)> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter())
        .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes() {
        let mut o = json!({"metadata": {"name": "a", "labels": {"x": "1", "n": 2}}});
        assert_eq!(name(&o), "a");
        assert_eq!(labels(&o).collect::<Vec<_>>(), vec![("x", "1")]);
        set_str(&mut o, "namespace", "default");
        assert_eq!(namespace(&o), "default");
        let mut bare = json!(null);
        set_str(&mut bare, "name", "b");
        assert_eq!(name(&bare), "b");
    }
}
