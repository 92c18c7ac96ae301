//! The Swagger 2.0 document served at `/openapi/v2`.
//!
//! kubectl (and older clients) parse it with a strict Swagger 2.0 parser, so JSON Schema
//! keywords Swagger 2.0 lacks (`oneOf`, `anyOf`, `not`, `nullable`) are dropped from it.

use rkube_core::registry::Registry;
use serde_json::{Map, Value, json};

use crate::custom::{definition_of, insert_custom, permissive_schema};
use crate::definitions::{builtin, v2_ref};
use crate::paths::{
    Operation, PATCH_CONTENT_TYPES, PRODUCES, PRODUCES_WATCH, Param, ParamType, PathItem,
    resource_paths, tag,
};

/// The Kubernetes version the documents describe.
pub const KUBERNETES_VERSION: &str = "v1.35.0";

/// Builds `/openapi/v2` for a registry whose custom resources have no known schema.
pub fn v2_document(registry: &Registry) -> Value {
    let defs = with_customs(registry, builtin());
    build(registry, &defs)
}

/// Adds a permissive definition for every custom resource of `registry` not yet in `defs`.
pub fn with_customs(registry: &Registry, mut defs: Map<String, Value>) -> Map<String, Value> {
    for r in registry.resources() {
        if !defs.contains_key(&definition_of(r)) {
            insert_custom(&mut defs, r, &permissive_schema());
        }
    }
    defs
}

/// Builds the document from `registry`'s paths and the definitions in `defs`.
pub fn build(registry: &Registry, defs: &Map<String, Value>) -> Value {
    let mut paths = Map::new();
    for r in registry.resources() {
        for item in resource_paths(r, &definition_of(r)) {
            paths.insert(item.path.clone(), render_path(&item));
        }
    }
    let mut definitions = Map::new();
    for (name, def) in defs {
        let mut def = def.clone();
        sanitize(&mut def);
        definitions.insert(name.clone(), def);
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            }
        },
        "security": [ { "BearerToken": [] } ],
    })
}

/// Removes keywords Swagger 2.0 does not know, recursively.
fn sanitize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for key in ["oneOf", "anyOf", "not", "nullable"] {
                map.remove(key);
            }
            map.values_mut().for_each(sanitize);
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        _ => {}
    }
}

fn type_name(ty: ParamType) -> &'static str {
    match ty {
        ParamType::String => "string",
        ParamType::Boolean => "boolean",
        ParamType::Integer => "integer",
    }
}

fn render_param(p: &Param) -> Value {
    let mut v = json!({
        "uniqueItems": true,
        "type": type_name(p.ty),
        "description": p.description,
        "name": p.name,
        "in": p.location,
    });
    if p.location == "path" {
        v["required"] = true.into();
    }
    v
}

fn render_path(item: &PathItem) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.into(), render_operation(op));
    }
    out.insert(
        "parameters".into(),
        Value::Array(item.params.iter().map(render_param).collect()),
    );
    Value::Object(out)
}

fn status_text(code: &str) -> &'static str {
    match code {
        "201" => "Created",
        "202" => "Accepted",
        _ => "OK",
    }
}

fn render_operation(op: &Operation) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if let Some(body) = &op.body {
        params.push(json!({ "name": "body", "in": "body", "required": op.method != "delete", "schema": v2_ref(body) }));
    }
    params.extend(op.params.iter().map(render_param));
    let consumes: Vec<&str> = if op.method == "patch" {
        PATCH_CONTENT_TYPES.to_vec()
    } else {
        vec!["*/*"]
    };
    let produces = if op.action.starts_with("watch") || op.action == "list" {
        PRODUCES_WATCH
    } else {
        PRODUCES
    };
    let mut responses = Map::new();
    for code in op.statuses {
        responses.insert(
            (*code).into(),
            json!({ "description": status_text(code), "schema": v2_ref(&op.response) }),
        );
    }
    responses.insert("401".into(), json!({ "description": "Unauthorized" }));
    let (group, version, kind) = &op.gvk;
    json!({
        "description": op.description,
        "consumes": consumes,
        "produces": produces,
        "schemes": ["https"],
        "tags": [tag(group, version)],
        "operationId": op.id,
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": { "group": group, "kind": kind, "version": version },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{closure, collect_refs, ref_name};

    #[test]
    fn document_has_paths_definitions_and_parameters() {
        let doc = v2_document(&Registry::builtin());
        assert_eq!(doc["swagger"], "2.0");
        let pod = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(pod["get"]["x-kubernetes-action"], "get");
        assert_eq!(
            pod["patch"]["x-kubernetes-group-version-kind"]["kind"],
            "Pod"
        );
        let names: Vec<&str> = pod["patch"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for n in ["body", "dryRun", "fieldManager", "fieldValidation", "force"] {
            assert!(names.contains(&n), "{n}");
        }
        assert!(
            pod["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "pretty")
        );
        assert!(doc["definitions"]["io.k8s.api.apps.v1.DeploymentList"].is_object());
    }

    #[test]
    fn every_reference_resolves_and_no_v3_keywords() {
        let doc = v2_document(&Registry::builtin());
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        let defs = doc["definitions"].as_object().unwrap();
        for r in &refs {
            assert!(defs.contains_key(r), "dangling {r}");
        }
        let text = doc.to_string();
        assert!(!text.contains("\"oneOf\""));
        assert!(!text.contains("\"anyOf\""));
        assert!(ref_name("#/definitions/x") == Some("x"));
        assert!(!closure(defs, refs).is_empty());
    }

    /// Every key of every schema node is one Swagger 2.0 knows (or a vendor extension), so
    /// strict Swagger 2.0 parsers such as kubectl's accept the document.
    #[test]
    fn schemas_use_only_swagger2_keywords() {
        const ALLOWED: &[&str] = &[
            "$ref",
            "description",
            "type",
            "format",
            "properties",
            "items",
            "required",
            "additionalProperties",
            "enum",
            "default",
            "allOf",
            "title",
            "maximum",
            "minimum",
            "maxLength",
            "minLength",
            "pattern",
            "maxItems",
            "minItems",
            "uniqueItems",
            "exclusiveMaximum",
            "exclusiveMinimum",
            "multipleOf",
            "readOnly",
            "example",
        ];
        fn walk(v: &Value, path: &str) {
            let Value::Object(m) = v else { return };
            for (k, child) in m {
                assert!(
                    k.starts_with("x-") || ALLOWED.contains(&k.as_str()),
                    "{path}: keyword {k}"
                );
                match k.as_str() {
                    "properties" => {
                        for (name, p) in child.as_object().into_iter().flatten() {
                            walk(p, &format!("{path}.{name}"));
                        }
                    }
                    "items" | "additionalProperties" => walk(child, path),
                    "allOf" => child
                        .as_array()
                        .into_iter()
                        .flatten()
                        .for_each(|c| walk(c, path)),
                    _ => {}
                }
            }
        }
        let doc = v2_document(&Registry::builtin());
        for (name, def) in doc["definitions"].as_object().unwrap() {
            walk(def, name);
        }
    }
}
