//! Field errors and the name/label rules upstream applies to every object
//! (`apimachinery/pkg/util/validation` and `.../api/validation`), with upstream's wording.

use std::fmt;

use serde_json::Value;

/// What is wrong with a field (upstream's `field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// `Not found`.
    NotFound,
    /// `Required value`.
    Required,
    /// `Duplicate value`.
    Duplicate,
    /// `Invalid value`.
    Invalid,
    /// `Unsupported value`.
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Too long`.
    TooLong,
}

impl FieldErrorKind {
    /// The `StatusCause.reason` upstream reports for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "FieldValueNotFound",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::NotFound => "Not found",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
        }
    }
}

/// One problem with one field, e.g. `spec.replicas: Invalid value: -1: must be …`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of problem.
    pub kind: FieldErrorKind,
    /// Dotted path with indices, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The offending value, for kinds that show it.
    pub value: Option<Value>,
    /// Explanation.
    pub detail: String,
    /// Show `value` as written (a Go `%#v` rendering) rather than as JSON.
    pub verbatim: bool,
}

impl FieldError {
    fn new(kind: FieldErrorKind, field: &str, value: Option<Value>, detail: &str) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
            verbatim: false,
        }
    }
    /// A required field is missing.
    pub fn required(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorKind::Required, field, None, detail)
    }
    /// A field's value is not acceptable.
    pub fn invalid(field: &str, value: Value, detail: &str) -> Self {
        Self::new(FieldErrorKind::Invalid, field, Some(value), detail)
    }
    /// Like [`FieldError::invalid`], with the value already rendered as upstream shows it
    /// (e.g. `map[string]string{"app":"x"}`).
    pub fn invalid_verbatim(field: &str, shown: String, detail: &str) -> Self {
        let mut e = Self::new(
            FieldErrorKind::Invalid,
            field,
            Some(Value::String(shown)),
            detail,
        );
        e.verbatim = true;
        e
    }
    /// A field may not be set or changed.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self::new(FieldErrorKind::Forbidden, field, None, detail)
    }
    /// A value appears twice where it must be unique.
    pub fn duplicate(field: &str, value: Value) -> Self {
        Self::new(FieldErrorKind::Duplicate, field, Some(value), "")
    }
    /// A value outside an enumerated set.
    pub fn not_supported(field: &str, value: Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            FieldErrorKind::NotSupported,
            field,
            Some(value),
            &format!("supported values: {list}"),
        )
    }
    /// A value is too long.
    pub fn too_long(field: &str, max: usize) -> Self {
        Self::new(
            FieldErrorKind::TooLong,
            field,
            None,
            &format!("must have at most {max} bytes"),
        )
    }

    /// The message without the field path (upstream's `ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        let shows_value = matches!(
            self.kind,
            FieldErrorKind::Invalid | FieldErrorKind::NotSupported | FieldErrorKind::Duplicate
        );
        if let (Some(v), true) = (&self.value, shows_value) {
            s.push_str(": ");
            match (self.verbatim, v) {
                (true, Value::String(shown)) => s.push_str(shown),
                _ => s.push_str(&show_value(v)),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_dns1123_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Problems with `s` as an RFC 1123 label (namespace names, service names…).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label_shape(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// Problems with `s` as an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !s.split('.').all(is_dns1123_label_shape) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with a label or annotation key (`[prefix/]name`).
pub fn qualified_name(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_part(name) {
            errs.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    errs
}

/// Problems with a label value.
pub fn label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_part(v) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

/// Field errors for a `metadata.labels` map.
pub fn labels(labels: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    if let Some(map) = labels.as_object() {
        for (k, v) in map {
            for m in qualified_name(k) {
                out.push(FieldError::invalid(path, Value::String(k.clone()), &m));
            }
            match v.as_str() {
                Some(s) => {
                    for m in label_value(s) {
                        out.push(FieldError::invalid(&format!("{path}[{k}]"), v.clone(), &m));
                    }
                }
                None => out.push(FieldError::invalid(
                    &format!("{path}[{k}]"),
                    v.clone(),
                    "label values must be strings",
                )),
            }
        }
    }
    out
}

/// Field errors for a `metadata.annotations` map (keys, and a 256 KiB total).
pub fn annotations(annotations: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    if let Some(map) = annotations.as_object() {
        let mut total = 0;
        for (k, v) in map {
            for m in qualified_name(&k.to_ascii_lowercase()) {
                out.push(FieldError::invalid(path, Value::String(k.clone()), &m));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            out.push(FieldError::too_long(path, 256 * 1024));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("web.example-1").is_empty());
        assert!(!dns1123_subdomain("Bad_Name").is_empty());
        assert!(dns1123_label("kube-system").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert_eq!(dns1123_label(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn label_rules() {
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name("-bad").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("has space").is_empty());
        let errs = labels(&json!({"ok": "v", "bad key": "v"}), "metadata.labels");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must")
        );
    }
}
