//! Strict field validation: the fields of an object its schema does not know, as upstream's
//! strict decoding reports them (`spec.foo`, `spec.template.spec.containers[0].imagePullPolcy`).

use serde_json::Value;

use crate::schema::{Schema, Schemas};

/// Paths of fields `schema` does not declare, in document order. Objects with
/// `preserve_unknown`, `Map` values' keys and `Any` values are never reported.
pub fn unknown_fields(value: &Value, schema: &Schema, schemas: &Schemas) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, schema, schemas, &mut String::new(), &mut out);
    out
}

fn walk(
    value: &Value,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut String,
    out: &mut Vec<String>,
) {
    let schema = schemas.resolve(schema);
    match (schema, value) {
        (
            Schema::Object {
                fields,
                preserve_unknown,
            },
            Value::Object(obj),
        ) => {
            for (k, v) in obj {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match fields.get(k) {
                    Some(s) => walk(v, s, schemas, path, out),
                    None if *preserve_unknown => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Schema::Map { values }, Value::Object(obj)) => {
            for (k, v) in obj {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(v, values, schemas, path, out);
                path.truncate(len);
            }
        }
        (Schema::List { items, .. }, Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, items, schemas, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Paths of required fields missing from `value` (upstream's `Required value` errors),
/// following the `required` lists of the named definitions the schema refers to. The
/// top-level `apiVersion`, `kind`, `metadata` and `status` are the server's business and
/// are not checked.
pub fn missing_required(value: &Value, schema: &Schema, schemas: &Schemas) -> Vec<String> {
    let mut out = Vec::new();
    required_walk(value, schema, schemas, &mut String::new(), &mut out);
    out
}

fn required_walk(
    value: &Value,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut String,
    out: &mut Vec<String>,
) {
    let mut schema = schema;
    let mut required: &[String] = &[];
    // Bounded like `Schemas::resolve`; the last named definition's `required` applies.
    for _ in 0..32 {
        match schema {
            Schema::Ref(name) => {
                required = schemas.required_of(name);
                schema = match schemas.get(name) {
                    Some(s) => s,
                    None => return,
                };
            }
            _ => break,
        }
    }
    let join = |path: &String, k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (schema, value) {
        (Schema::Object { fields, .. }, Value::Object(obj)) => {
            for r in required {
                let top_level_meta = path.is_empty()
                    && matches!(r.as_str(), "apiVersion" | "kind" | "metadata" | "status");
                if !top_level_meta && obj.get(r).is_none_or(Value::is_null) {
                    out.push(join(path, r));
                }
            }
            for (k, v) in obj {
                if path.is_empty() && k == "status" {
                    continue;
                }
                if let Some(s) = fields.get(k) {
                    let dot = if path.is_empty() { "" } else { "." };
                    descend(v, s, schemas, format_args!("{dot}{k}"), path, out);
                }
            }
        }
        (Schema::Map { values }, Value::Object(obj)) => {
            for (k, v) in obj {
                let dot = if path.is_empty() { "" } else { "." };
                descend(v, values, schemas, format_args!("{dot}{k}"), path, out);
            }
        }
        (Schema::List { items, .. }, Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                descend(v, items, schemas, format_args!("[{i}]"), path, out);
            }
        }
        _ => {}
    }
}

/// Walks into a child at `path` + `segment`. The path is built in `path` itself and cut back
/// afterwards: the required walk runs on every create and update, and most fields are
/// scalars with nothing below them to check.
fn descend(
    v: &Value,
    s: &Schema,
    schemas: &Schemas,
    segment: std::fmt::Arguments<'_>,
    path: &mut String,
    out: &mut Vec<String>,
) {
    if !(v.is_object() || v.is_array()) {
        return;
    }
    let len = path.len();
    let _ = std::fmt::Write::write_fmt(path, segment);
    required_walk(v, s, schemas, path, out);
    path.truncate(len);
}

/// Removes the fields `schema` does not declare (what upstream's decoding into typed objects,
/// or pruning of structural CRD schemas, does to them). Same rules as [`unknown_fields`].
pub fn prune_unknown(value: &mut Value, schema: &Schema, schemas: &Schemas) {
    match (schemas.resolve(schema), value) {
        (
            Schema::Object {
                fields,
                preserve_unknown,
            },
            Value::Object(obj),
        ) => {
            if !*preserve_unknown {
                obj.retain(|k, _| fields.contains_key(k));
            }
            for (k, v) in obj.iter_mut() {
                if let Some(s) = fields.get(k) {
                    prune_unknown(v, s, schemas);
                }
            }
        }
        (Schema::Map { values }, Value::Object(obj)) => {
            for v in obj.values_mut() {
                prune_unknown(v, values, schemas);
            }
        }
        (Schema::List { items, .. }, Value::Array(list)) => {
            for v in list.iter_mut() {
                prune_unknown(v, items, schemas);
            }
        }
        _ => {}
    }
}

/// A value of the wrong JSON type for its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Dotted path, e.g. `spec.replicas`.
    pub path: String,
    /// The JSON type found: `string`, `number`, `bool`, `array`, `object`.
    pub found: &'static str,
    /// The type the field has, as Go names it: `int32`, `string`, `map[string]string`…
    pub expected: &'static str,
}

impl std::fmt::Display for TypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The shape of Go's `json.UnmarshalTypeError`, which upstream reports.
        write!(
            f,
            "json: cannot unmarshal {} into Go struct field .{} of type {}",
            self.found, self.path, self.expected
        )
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Values whose JSON type does not fit their schema (`null` fits everything, as in Go).
/// Strings accept numbers, since quantities (`cpu: 1`) are strings that clients often send
/// as numbers and upstream accepts them.
pub fn type_errors(value: &Value, schema: &Schema, schemas: &Schemas) -> Vec<TypeError> {
    let mut out = Vec::new();
    check_types(value, schema, schemas, &mut String::new(), &mut out);
    out
}

fn check_types(
    value: &Value,
    schema: &Schema,
    schemas: &Schemas,
    path: &mut String,
    out: &mut Vec<TypeError>,
) {
    use crate::schema::ScalarType;
    let schema = schemas.resolve(schema);
    let child = |k: &str, v: &Value, s: &Schema, path: &mut String, out: &mut Vec<TypeError>| {
        let len = path.len();
        if !path.is_empty() && !k.starts_with('[') {
            path.push('.');
        }
        path.push_str(k);
        check_types(v, s, schemas, path, out);
        path.truncate(len);
    };
    let expected = match (schema, value) {
        (_, Value::Null) | (Schema::Any, _) => return,
        (Schema::Object { fields, .. }, Value::Object(obj)) => {
            for (k, v) in obj {
                if let Some(s) = fields.get(k) {
                    child(k, v, s, path, out);
                }
            }
            return;
        }
        (Schema::Map { values }, Value::Object(obj)) => {
            for (k, v) in obj {
                child(k, v, values, path, out);
            }
            return;
        }
        (Schema::List { items, .. }, Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                child(&format!("[{i}]"), v, items, path, out);
            }
            return;
        }
        (Schema::Scalar(ScalarType::String), Value::String(_) | Value::Number(_))
        | (Schema::Scalar(ScalarType::Integer), Value::Number(_))
        | (Schema::Scalar(ScalarType::Number), Value::Number(_))
        | (Schema::Scalar(ScalarType::Boolean), Value::Bool(_))
        | (Schema::Scalar(ScalarType::IntOrString), Value::Number(_) | Value::String(_)) => return,
        (Schema::Object { .. }, _) => "struct",
        (Schema::Map { .. }, _) => "map[string]string",
        (Schema::List { .. }, _) => "[]",
        (Schema::Scalar(ScalarType::String), _) => "string",
        (Schema::Scalar(ScalarType::Integer), _) => "int32",
        (Schema::Scalar(ScalarType::Number), _) => "float64",
        (Schema::Scalar(ScalarType::Boolean), _) => "bool",
        (Schema::Scalar(ScalarType::IntOrString), _) => "intstr.IntOrString",
        (Schema::Ref(_), _) => return,
    };
    out.push(TypeError {
        path: path.clone(),
        found: json_type(value),
        expected,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ListPatch, ListType, ScalarType};
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn missing_required_fields_are_reported() {
        let mut schemas = Schemas::new();
        schemas.insert(
            "Rule",
            obj(&[
                (
                    "verbs",
                    Schema::List {
                        items: Box::new(Schema::Scalar(ScalarType::String)),
                        patch: ListPatch::Replace,
                        list_type: ListType::Atomic,
                    },
                ),
                ("resources", Schema::Any),
            ]),
        );
        schemas.insert_required("Rule", vec!["verbs".into()]);
        schemas.insert(
            "Role",
            obj(&[
                (
                    "rules",
                    Schema::List {
                        items: Box::new(Schema::Ref("Rule".into())),
                        patch: ListPatch::Replace,
                        list_type: ListType::Atomic,
                    },
                ),
                ("kind", Schema::Scalar(ScalarType::String)),
            ]),
        );
        schemas.insert_required("Role", vec!["kind".into(), "rules".into()]);
        let role = Schema::Ref("Role".into());
        assert_eq!(
            missing_required(
                &json!({"rules": [{"verbs": ["get"]}, {"resources": ["pods"]}]}),
                &role,
                &schemas
            ),
            vec!["rules[1].verbs"]
        );
        assert_eq!(missing_required(&json!({}), &role, &schemas), vec!["rules"]);
    }

    #[test]
    fn wrong_types_are_reported() {
        let schemas = Schemas::new();
        let schema = obj(&[
            ("kind", Schema::Scalar(ScalarType::String)),
            (
                "data",
                Schema::Map {
                    values: Box::new(Schema::Scalar(ScalarType::String)),
                },
            ),
            ("replicas", Schema::Scalar(ScalarType::Integer)),
        ]);
        let errs = type_errors(
            &json!({"kind": [], "data": "test", "replicas": "3"}),
            &schema,
            &schemas,
        );
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "json: cannot unmarshal array into Go struct field .kind of type string",
                "json: cannot unmarshal string into Go struct field .data of type map[string]string",
                "json: cannot unmarshal string into Go struct field .replicas of type int32",
            ]
        );
        assert!(
            type_errors(
                &json!({"data": {"a": "b"}, "replicas": 3, "kind": null}),
                &schema,
                &schemas
            )
            .is_empty()
        );
    }

    fn obj(fields: &[(&str, Schema)]) -> Schema {
        Schema::Object {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            preserve_unknown: false,
        }
    }

    #[test]
    fn reports_unknown_fields() {
        let s = || Schema::Scalar(ScalarType::String);
        let mut schemas = Schemas::new();
        schemas.insert("Container", obj(&[("name", s()), ("imagePullPolicy", s())]));
        let root = obj(&[
            (
                "metadata",
                obj(&[(
                    "labels",
                    Schema::Map {
                        values: Box::new(s()),
                    },
                )]),
            ),
            (
                "spec",
                obj(&[
                    (
                        "containers",
                        Schema::List {
                            items: Box::new(Schema::Ref("Container".into())),
                            patch: ListPatch::Merge {
                                key: Some("name".into()),
                                retain_keys: false,
                            },
                            list_type: ListType::Map {
                                keys: vec!["name".into()],
                            },
                        },
                    ),
                    (
                        "extra",
                        Schema::Object {
                            fields: BTreeMap::new(),
                            preserve_unknown: true,
                        },
                    ),
                    ("raw", Schema::Any),
                ]),
            ),
        ]);
        let v = json!({
            "metadata": {"labels": {"a": "b"}, "lables": {}},
            "spec": {
                "foo": 1,
                "containers": [{"name": "a"}, {"name": "b", "imagePullPolcy": "Always"}],
                "extra": {"anything": {"goes": 1}},
                "raw": {"x": 1}
            }
        });
        assert_eq!(
            unknown_fields(&v, &root, &schemas),
            vec![
                "metadata.lables",
                "spec.foo",
                "spec.containers[1].imagePullPolcy"
            ]
        );
    }
}
