//! The OpenAPI 3.0 documents served at `/openapi/v3` (an index) and `/openapi/v3/<gv>` (one
//! group version each).
//!
//! Upstream splits v3 per group version so that clients fetch only what they need; the index
//! carries a content hash per document for caching. kubectl reads these documents for
//! `kubectl explain` (finding a kind through `x-kubernetes-group-version-kind` in
//! `components.schemas`) and to decide whether the server validates fields (the PATCH
//! operation of a kind listing the `fieldValidation` query parameter).

use rkube_core::registry::Registry;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::custom::definition_of;
use crate::definitions::{builtin, closure, collect_refs, ref_name};
use crate::paths::{
    Operation, PATCH_CONTENT_TYPES, PRODUCES, PRODUCES_WATCH, Param, ParamType, PathItem,
    resource_paths, tag,
};
use crate::v2::{KUBERNETES_VERSION, with_customs};

/// Prefix of an OpenAPI 3 component reference.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";

/// The index key of a group version: `api/v1` or `apis/apps/v1`.
pub fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Parses an index key (`api/v1`, `apis/apps/v1`, with or without a leading `/`) into
/// (group, version).
pub fn parse_gv_key(key: &str) -> Option<(String, String)> {
    let key = key.trim_start_matches('/');
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["api", v] if !v.is_empty() => Some((String::new(), v.to_string())),
        ["apis", g, v] if !g.is_empty() && !v.is_empty() => Some((g.to_string(), v.to_string())),
        _ => None,
    }
}

/// Stable upper-case hex SHA-512 of a serialized document, as upstream's index uses.
pub fn hash(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// The v3 document of one group version for a registry whose custom resources have no known
/// schema; `None` when the registry serves nothing in it.
pub fn v3_document(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs = with_customs(registry, builtin().clone());
    build(registry, &defs, group, version)
}

/// `GET /openapi/v3`: every group version with the URL (and hash) of its document.
pub fn v3_index(registry: &Registry) -> Value {
    let defs = with_customs(registry, builtin().clone());
    let mut entries = Vec::new();
    for (group, version) in registry.group_versions() {
        if let Some(doc) = build(registry, &defs, &group, &version) {
            entries.push((gv_key(&group, &version), hash(doc.to_string().as_bytes())));
        }
    }
    index_of(&entries)
}

/// The index document for (key, hash) pairs.
pub fn index_of(entries: &[(String, String)]) -> Value {
    let mut paths = Map::new();
    for (key, hash) in entries {
        paths.insert(
            key.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

/// Builds one group version's document from `defs` (Swagger 2.0 form).
pub fn build(
    registry: &Registry,
    defs: &Map<String, Value>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut paths = Map::new();
    let mut roots = Vec::new();
    for r in registry.in_group_version(group, version) {
        let def = definition_of(r);
        roots.push(crate::definitions::list_definition_name(&def));
        roots.push(def.clone());
        for item in resource_paths(r, &def) {
            paths.insert(item.path.clone(), render_path(&item));
        }
    }
    if roots.is_empty() {
        return None;
    }
    let paths = Value::Object(paths);
    collect_refs(&paths, &mut roots);
    let mut schemas = Map::new();
    for name in closure(defs, roots) {
        if let Some(def) = defs.get(&name) {
            schemas.insert(name, to_v3(def));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": KUBERNETES_VERSION },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
        "security": [ { "BearerToken": [] } ],
    }))
}

/// Rewrites a Swagger 2.0 schema into OpenAPI 3 form: references point into
/// `components.schemas`, and a reference with siblings (a description) becomes
/// `allOf: [{$ref}]` beside them, since OpenAPI 3.0 ignores a `$ref`'s siblings.
pub fn to_v3(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str).and_then(ref_name) {
                let reference = json!({ "$ref": format!("{V3_REF_PREFIX}{name}") });
                if map.len() == 1 {
                    return reference;
                }
                let mut out = Map::new();
                out.insert("allOf".into(), Value::Array(vec![reference]));
                for (k, v) in map {
                    if k != "$ref" {
                        out.insert(k.clone(), to_v3(v));
                    }
                }
                return Value::Object(out);
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), to_v3(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

fn v3_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V3_REF_PREFIX}{name}") })
}

fn render_param(p: &Param) -> Value {
    let ty = match p.ty {
        ParamType::String => "string",
        ParamType::Boolean => "boolean",
        ParamType::Integer => "integer",
    };
    let mut v = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "schema": { "type": ty, "uniqueItems": true },
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

fn content(types: &[&str], schema: &Value) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| ((*t).to_string(), json!({ "schema": schema })))
            .collect(),
    )
}

fn render_operation(op: &Operation) -> Value {
    let (group, version, kind) = &op.gvk;
    let mut out = json!({
        "tags": [tag(group, version)],
        "description": op.description,
        "operationId": op.id,
        "parameters": op.params.iter().map(render_param).collect::<Vec<_>>(),
    });
    if let Some(body) = &op.body {
        let types: &[&str] = if op.method == "patch" {
            PATCH_CONTENT_TYPES
        } else {
            &["*/*"]
        };
        out["requestBody"] = json!({
            "content": content(types, &v3_ref(body)),
            "required": op.method != "delete",
        });
    }
    let produces = if op.action.starts_with("watch") || op.action == "list" {
        PRODUCES_WATCH
    } else {
        PRODUCES
    };
    let mut responses = Map::new();
    for code in op.statuses {
        let text = match *code {
            "201" => "Created",
            "202" => "Accepted",
            _ => "OK",
        };
        responses.insert(
            (*code).into(),
            json!({ "description": text, "content": content(produces, &v3_ref(&op.response)) }),
        );
    }
    responses.insert("401".into(), json!({ "description": "Unauthorized" }));
    out["responses"] = Value::Object(responses);
    out["x-kubernetes-action"] = op.action.into();
    out["x-kubernetes-group-version-kind"] =
        json!({ "group": group, "kind": kind, "version": version });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> Value {
        v3_document(&Registry::builtin(), "apps", "v1").unwrap()
    }

    /// Follows `$ref`/`allOf` and a dotted field path the way `kubectl explain` does.
    fn explain<'a>(schemas: &'a Map<String, Value>, kind: &str, path: &[&str]) -> &'a Value {
        let mut current = schemas
            .values()
            .find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|g| g["kind"] == kind))
            })
            .unwrap_or_else(|| panic!("no kind {kind}"));
        for field in path {
            let next = &current["properties"][field];
            assert!(next.is_object(), "no field {field}");
            current = next;
            loop {
                let reference = current["$ref"]
                    .as_str()
                    .or_else(|| current["allOf"][0]["$ref"].as_str());
                match reference {
                    Some(r) => current = &schemas[r.trim_start_matches(V3_REF_PREFIX)],
                    None => break,
                }
            }
        }
        current
    }

    #[test]
    fn every_ref_resolves() {
        for (g, v) in Registry::builtin().group_versions() {
            let doc = v3_document(&Registry::builtin(), &g, &v).unwrap();
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                assert!(schemas.contains_key(&r), "{g}/{v}: dangling {r}");
            }
            assert!(!doc.to_string().contains("#/definitions/"));
        }
    }

    #[test]
    fn explain_finds_fields() {
        let doc = apps();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let template = explain(schemas, "Deployment", &["spec", "template", "spec"]);
        assert!(template["properties"]["containers"].is_object());
        let core = v3_document(&Registry::builtin(), "", "v1").unwrap();
        let schemas = core["components"]["schemas"].as_object().unwrap();
        let spec = explain(schemas, "Pod", &["spec"]);
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert!(!schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    }

    #[test]
    fn patch_lists_field_validation_and_content_types() {
        let doc = apps();
        let op = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(names.contains(&"fieldValidation") && names.contains(&"dryRun"));
        let body = op["requestBody"]["content"].as_object().unwrap();
        assert!(body.contains_key("application/strategic-merge-patch+json"));
        assert!(body.contains_key("application/apply-patch+yaml"));
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert!(post["parameters"].to_string().contains("fieldValidation"));
    }

    #[test]
    fn index_lists_group_versions_with_stable_hashes() {
        let reg = Registry::builtin();
        let a = v3_index(&reg);
        let b = v3_index(&reg);
        assert_eq!(a, b);
        let url = a["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert_eq!(url.len(), "/openapi/v3/apis/apps/v1?hash=".len() + 128);
        assert!(a["paths"]["api/v1"].is_object());
        assert_eq!(
            parse_gv_key("/apis/apps/v1"),
            Some(("apps".into(), "v1".into()))
        );
        assert_eq!(parse_gv_key("api/v1"), Some((String::new(), "v1".into())));
        assert_eq!(parse_gv_key("apis/x"), None);
        assert!(v3_document(&reg, "nope", "v1").is_none());
    }
}
