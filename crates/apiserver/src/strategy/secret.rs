//! Secrets and ConfigMaps: key rules, `stringData` folded into `data`, the Secret `type`
//! default and immutability.

use base64::Engine;
use rkube_core::validation::FieldError;
use serde_json::{Value, json};

use super::Strategy;

/// The Secret strategy.
pub struct Secret;
/// The ConfigMap strategy.
pub struct ConfigMap;

const KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn validate_keys(obj: &Value, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(map) = obj.get(field).and_then(Value::as_object) {
        for k in map.keys() {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
                && k != "."
                && k != "..";
            if !ok {
                errs.push(FieldError::invalid(
                    &format!("{field}[{k}]"),
                    json!(k),
                    KEY_MSG,
                ));
            }
        }
    }
}

fn immutable_data(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable") == Some(&json!(true)) {
        for f in fields {
            if new.get(*f) != old.get(*f) {
                errs.push(FieldError::forbidden(
                    f,
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        if new.get("immutable") != Some(&json!(true)) {
            errs.push(FieldError::forbidden(
                "immutable",
                "field is immutable when `immutable` is set",
            ));
        }
    }
}

impl Strategy for Secret {
    fn prepare_for_create(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if !map.get("type").is_some_and(Value::is_string) {
            map.insert("type".into(), json!("Opaque"));
        }
        if let Some(Value::Object(sd)) = map.remove("stringData") {
            let data = map.entry("data").or_insert_with(|| json!({}));
            if !data.is_object() {
                *data = json!({});
            }
            for (k, v) in sd {
                let s = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                data[&k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_keys(obj, "data", &mut errs);
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let has = |k: &str| obj.pointer(&format!("/data/{k}")).is_some();
        match ty {
            "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
                errs.push(FieldError::required("data[.dockerconfigjson]", ""))
            }
            "kubernetes.io/dockercfg" if !has(".dockercfg") => {
                errs.push(FieldError::required("data[.dockercfg]", ""))
            }
            "kubernetes.io/tls" if !has("tls.crt") || !has("tls.key") => {
                for k in ["tls.crt", "tls.key"].iter().filter(|k| !has(k)) {
                    errs.push(FieldError::required(&format!("data[{k}]"), ""));
                }
            }
            _ => {}
        }
        if let Some(map) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in map {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    errs.push(FieldError::invalid(
                        &format!("data[{k}]"),
                        v.clone(),
                        "must be base64 encoded bytes",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let Some(e) = super::immutable(new, old, "/type", "type") {
            errs.push(e);
        }
        immutable_data(new, old, &["data"], &mut errs);
        errs
    }
}

impl Strategy for ConfigMap {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_keys(obj, "data", &mut errs);
        validate_keys(obj, "binaryData", &mut errs);
        if let (Some(d), Some(b)) = (
            obj.get("data").and_then(Value::as_object),
            obj.get("binaryData").and_then(Value::as_object),
        ) {
            for k in d.keys().filter(|k| b.contains_key(*k)) {
                errs.push(FieldError::invalid(
                    &format!("data[{k}]"),
                    json!(k),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        immutable_data(new, old, &["data", "binaryData"], &mut errs);
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_folded_into_data() {
        let mut s = json!({"stringData": {"user": "admin"}, "data": {"a": "Yg=="}});
        Secret.prepare_for_create(&mut s);
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        assert!(Secret.validate(&s).is_empty());
    }

    #[test]
    fn bad_keys() {
        let errs = ConfigMap.validate(&json!({"data": {"bad key": "x"}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "data[bad key]");
    }
}
