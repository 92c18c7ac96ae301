//! The typed schema model ([`rkube_apimachinery::schema`]) built from OpenAPI definitions.
//!
//! Strategic merge patch, server-side apply and strict decoding need only a little of a
//! schema: which fields exist, which objects are maps, how each list merges. This module
//! reduces the JSON definitions (built-in ones and CRDs' `openAPIV3Schema`) to that model.
//! Lists without extensions are replaced whole and atomic, as upstream treats them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rkube_apimachinery::schema::{ListPatch, ListType, ScalarType, Schema, Schemas};
use serde_json::{Map, Value};

use crate::definitions::{INT_OR_STRING, OBJECT_META, QUANTITY, builtin, ref_name};

/// Definitions whose model is fixed by name rather than read from their JSON.
fn special(name: &str) -> Option<Schema> {
    match name {
        INT_OR_STRING => Some(Schema::Scalar(ScalarType::IntOrString)),
        QUANTITY
        | "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            Some(Schema::Scalar(ScalarType::String))
        }
        "io.k8s.apimachinery.pkg.runtime.RawExtension"
        | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool"
        | "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray" => {
            Some(Schema::Any)
        }
        _ => None,
    }
}

/// Every built-in definition as a typed schema, built once per process.
pub fn schemas() -> Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| schemas_of(&builtin())).clone()
}

/// Converts every definition of `defs` (Swagger 2.0 or OpenAPI 3 form).
pub fn schemas_of(defs: &Map<String, Value>) -> Schemas {
    let mut out = Schemas::new();
    for (name, def) in defs {
        let schema = special(name).unwrap_or_else(|| convert(def, false));
        out.insert(name.clone(), schema);
        let required: Vec<String> = def
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        if !required.is_empty() {
            out.insert_required(name, required);
        }
        let properties = def.get("properties").and_then(Value::as_object);
        for (field, prop) in properties.into_iter().flatten() {
            if let Some(default) = prop.get("default") {
                out.insert_default(name, field, default.clone());
            }
        }
    }
    out
}

/// The schema of a kind: a reference to its definition, resolved through [`schemas`].
pub fn schema_for_kind(definition_name: &str) -> Schema {
    Schema::Ref(definition_name.to_string())
}

/// Converts a CRD's `openAPIV3Schema`. The top level always allows `apiVersion`, `kind` and
/// `metadata` (an `ObjectMeta`), whatever the schema says.
pub fn from_openapi_v3(schema_json: &Value) -> Schema {
    let schema = convert(schema_json, true);
    let (mut fields, preserve_unknown) = match schema {
        Schema::Object {
            fields,
            preserve_unknown,
        } => (fields, preserve_unknown),
        // Not an object schema: keep whatever the object carries.
        _ => (BTreeMap::new(), true),
    };
    add_type_meta(&mut fields);
    Schema::Object {
        fields,
        preserve_unknown,
    }
}

fn add_type_meta(fields: &mut BTreeMap<String, Schema>) {
    fields.insert("apiVersion".into(), Schema::Scalar(ScalarType::String));
    fields.insert("kind".into(), Schema::Scalar(ScalarType::String));
    fields.insert("metadata".into(), Schema::Ref(OBJECT_META.into()));
}

/// Converts one JSON schema. `crd` selects CRD semantics for an object without properties:
/// in a CRD it has no fields (unknown ones are pruned unless preserved); in the built-in API it
/// is free-form.
fn convert(v: &Value, crd: bool) -> Schema {
    let Value::Object(m) = v else {
        return Schema::Any;
    };
    if let Some(r) = m.get("$ref").and_then(Value::as_str) {
        return Schema::Ref(ref_name(r).unwrap_or(r).to_string());
    }
    let ty = m.get("type").and_then(Value::as_str);
    if ty.is_none()
        && let Some(Value::Array(all)) = m.get("allOf")
        && let [only] = all.as_slice()
    {
        return convert(only, crd);
    }
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string")
        || m.get("format").and_then(Value::as_str) == Some("int-or-string")
    {
        return Schema::Scalar(ScalarType::IntOrString);
    }
    let preserve = flag("x-kubernetes-preserve-unknown-fields");
    let embedded = flag("x-kubernetes-embedded-resource");
    let properties = m.get("properties").and_then(Value::as_object);
    match ty {
        Some("array") => Schema::List {
            items: Box::new(m.get("items").map_or(Schema::Any, |i| convert(i, crd))),
            patch: list_patch(m),
            list_type: list_type(m),
        },
        Some("string") => Schema::Scalar(ScalarType::String),
        Some("integer") => Schema::Scalar(ScalarType::Integer),
        Some("number") => Schema::Scalar(ScalarType::Number),
        Some("boolean") => Schema::Scalar(ScalarType::Boolean),
        Some("object") | None if properties.is_some_and(|p| !p.is_empty()) || embedded => {
            let mut fields: BTreeMap<String, Schema> = properties
                .into_iter()
                .flatten()
                .map(|(k, s)| (k.clone(), convert(s, crd)))
                .collect();
            if embedded {
                add_type_meta(&mut fields);
            }
            Schema::Object {
                fields,
                preserve_unknown: preserve,
            }
        }
        Some("object") => match m.get("additionalProperties") {
            Some(Value::Object(values)) => Schema::Map {
                values: Box::new(convert(&Value::Object(values.clone()), crd)),
            },
            Some(Value::Bool(true)) => Schema::Map {
                values: Box::new(Schema::Any),
            },
            _ if preserve || crd => Schema::Object {
                fields: BTreeMap::new(),
                preserve_unknown: preserve,
            },
            _ => Schema::Any,
        },
        _ => Schema::Any,
    }
}

fn list_patch(m: &Map<String, Value>) -> ListPatch {
    let strategy = m
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or("");
    let parts: Vec<&str> = strategy.split(',').map(str::trim).collect();
    if !parts.contains(&"merge") {
        return ListPatch::Replace;
    }
    ListPatch::Merge {
        key: m
            .get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .map(str::to_string),
        retain_keys: parts.contains(&"retainKeys"),
    }
}

fn list_type(m: &Map<String, Value>) -> ListType {
    match m.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map {
            keys: m
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| {
                    keys.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        },
        _ => ListType::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Walks a dotted path through objects and list items.
    fn at<'a>(schemas: &'a Schemas, root: &'a Schema, path: &[&str]) -> &'a Schema {
        let mut current = schemas.resolve(root);
        for field in path {
            current = match current {
                Schema::Object { fields, .. } => {
                    schemas.resolve(fields.get(*field).unwrap_or_else(|| panic!("no {field}")))
                }
                other => panic!("{field}: not an object: {other:?}"),
            };
        }
        current
    }

    #[test]
    fn deployment_reaches_containers() {
        let s = schemas();
        let root = schema_for_kind("io.k8s.api.apps.v1.Deployment");
        let containers = at(&s, &root, &["spec", "template", "spec", "containers"]);
        let Schema::List {
            items,
            patch,
            list_type,
        } = containers
        else {
            panic!("not a list: {containers:?}");
        };
        assert_eq!(
            patch,
            &ListPatch::Merge {
                key: Some("name".into()),
                retain_keys: false
            }
        );
        assert_eq!(
            list_type,
            &ListType::Map {
                keys: vec!["name".into()]
            }
        );
        let Schema::Object { fields, .. } = s.resolve(items) else {
            panic!("container not an object");
        };
        assert!(fields.contains_key("image"));
    }

    #[test]
    fn scalars_maps_and_plain_lists() {
        let s = schemas();
        let spec = schema_for_kind("io.k8s.api.core.v1.PodSpec");
        assert_eq!(
            at(&s, &spec, &["nodeSelector"]),
            &Schema::Map {
                values: Box::new(Schema::Scalar(ScalarType::String))
            }
        );
        let Schema::List {
            patch, list_type, ..
        } = at(&s, &spec, &["tolerations"])
        else {
            panic!();
        };
        assert_eq!((patch, list_type), (&ListPatch::Replace, &ListType::Atomic));
        let Schema::List { patch, .. } = at(&s, &spec, &["volumes"]) else {
            panic!();
        };
        assert_eq!(
            patch,
            &ListPatch::Merge {
                key: Some("name".into()),
                retain_keys: true
            }
        );
        let port = schema_for_kind("io.k8s.api.core.v1.ServicePort");
        assert_eq!(
            at(&s, &port, &["targetPort"]),
            &Schema::Scalar(ScalarType::IntOrString)
        );
        let rr = schema_for_kind("io.k8s.api.core.v1.ResourceRequirements");
        assert_eq!(
            at(&s, &rr, &["limits"]),
            &Schema::Map {
                values: Box::new(Schema::Ref(QUANTITY.into()))
            }
        );
        assert_eq!(s.get(QUANTITY), Some(&Schema::Scalar(ScalarType::String)));
        let meta = schema_for_kind(OBJECT_META);
        assert_eq!(
            at(&s, &meta, &["creationTimestamp"]),
            &Schema::Scalar(ScalarType::String)
        );
        let Schema::List { list_type, .. } = at(&s, &meta, &["finalizers"]) else {
            panic!();
        };
        assert_eq!(list_type, &ListType::Set);
        let rev = schema_for_kind("io.k8s.api.apps.v1.ControllerRevision");
        assert_eq!(at(&s, &rev, &["data"]), &Schema::Any);
    }

    #[test]
    fn crd_schema_converts() {
        let crd = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "cronSpec": {"type": "string"},
                        "replicas": {"type": "integer"},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "items": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "properties": {"name": {"type": "string"}}}
                        },
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "plain": {"type": "array", "items": {"type": "string"}}
                    }
                }
            }
        });
        let s = Schemas::new();
        let root = from_openapi_v3(&crd);
        let Schema::Object { fields, .. } = &root else {
            panic!("not an object");
        };
        assert_eq!(fields["metadata"], Schema::Ref(OBJECT_META.into()));
        assert_eq!(
            at(&s, &root, &["kind"]),
            &Schema::Scalar(ScalarType::String)
        );
        let spec = root.clone();
        assert_eq!(
            at(&s, &spec, &["spec", "port"]),
            &Schema::Scalar(ScalarType::IntOrString)
        );
        assert_eq!(
            at(&s, &spec, &["spec", "labels"]),
            &Schema::Map {
                values: Box::new(Schema::Scalar(ScalarType::String))
            }
        );
        assert_eq!(
            at(&s, &spec, &["spec", "extra"]),
            &Schema::Object {
                fields: BTreeMap::new(),
                preserve_unknown: true
            }
        );
        let Schema::List {
            list_type, patch, ..
        } = at(&s, &spec, &["spec", "items"])
        else {
            panic!();
        };
        assert_eq!(
            list_type,
            &ListType::Map {
                keys: vec!["name".into()]
            }
        );
        assert_eq!(patch, &ListPatch::Replace);
        let Schema::List { list_type, .. } = at(&s, &spec, &["spec", "tags"]) else {
            panic!();
        };
        assert_eq!(list_type, &ListType::Set);
        let Schema::List { list_type, .. } = at(&s, &spec, &["spec", "plain"]) else {
            panic!();
        };
        assert_eq!(list_type, &ListType::Atomic);
    }

    #[test]
    fn odd_crd_schemas_do_not_panic() {
        for v in [
            json!(null),
            json!(3),
            json!({"type": 5}),
            json!({"x-kubernetes-preserve-unknown-fields": true}),
        ] {
            let Schema::Object {
                fields,
                preserve_unknown,
            } = from_openapi_v3(&v)
            else {
                panic!();
            };
            assert!(fields.contains_key("metadata"));
            assert!(preserve_unknown);
        }
    }
}
