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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ListPatch, ListType, ScalarType};
    use serde_json::json;
    use std::collections::BTreeMap;

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
