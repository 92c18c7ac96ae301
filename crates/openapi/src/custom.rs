//! Definitions of custom resources, from their CustomResourceDefinition's `openAPIV3Schema`.
//!
//! Upstream names a custom kind's definition by its reversed group, version and kind
//! (`com.example.stable.v1.CronTab`) and guarantees that `apiVersion`, `kind` and `metadata`
//! exist at the top level whatever the CRD author wrote; this module does the same so that the
//! documents and `kubectl explain` treat custom kinds like built-in ones.

use rkube_core::registry::ResourceType;
use serde_json::{Map, Value, json};

use crate::definitions::{OBJECT_META, add_gvk, list_definition_name, list_schema, v2_ref};

/// `com.example.stable.v1.CronTab` for (`stable.example.com`, `v1`, `CronTab`).
pub fn custom_definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').filter(|s| !s.is_empty()).rev().collect();
    if reversed.is_empty() {
        format!("{version}.{kind}")
    } else {
        format!("{}.{version}.{kind}", reversed.join("."))
    }
}

/// The definition name of a resource's kind: its registry `definition`, or the custom name.
pub fn definition_of(r: &ResourceType) -> String {
    if r.definition.is_empty() {
        custom_definition_name(&r.group, &r.version, &r.kind)
    } else {
        r.definition.clone()
    }
}

/// A schema accepting any object, for a custom resource whose schema is unknown.
pub fn permissive_schema() -> Value {
    json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// Adds a custom kind's definition and its list's, with GVKs, to `defs`. `schema` is the
/// CRD's `openAPIV3Schema`; anything that is not a JSON object is treated as "any object".
pub fn insert_custom(defs: &mut Map<String, Value>, r: &ResourceType, schema: &Value) {
    let name = definition_of(r);
    let mut def = match schema {
        Value::Object(m) => m.clone(),
        _ => match permissive_schema() {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    };
    def.entry("type").or_insert_with(|| "object".into());
    let props = def
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"}),
        );
        props.insert(
            "kind".into(),
            json!({"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"}),
        );
        let mut meta = v2_ref(OBJECT_META);
        meta["description"] = "Standard object's metadata.".into();
        props.insert("metadata".into(), meta);
    }
    defs.insert(name.clone(), Value::Object(def));
    let list = list_definition_name(&name);
    defs.insert(list.clone(), list_schema(&name, &r.kind));
    // A fresh GVK list: a replaced definition must not keep stale entries.
    add_gvk(defs, &name, &r.group, &r.version, &r.kind);
    add_gvk(defs, &list, &r.group, &r.version, &r.list_kind());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reverse_the_group() {
        assert_eq!(
            custom_definition_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn top_level_fields_are_added() {
        let r = ResourceType {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            verbs: vec![],
            definition: String::new(),
        };
        let mut defs = Map::new();
        insert_custom(
            &mut defs,
            &r,
            &json!({"type": "object", "properties": {"spec": {"type": "object"}}}),
        );
        let def = &defs["com.example.stable.v1.CronTab"];
        assert!(def["properties"]["metadata"]["$ref"].is_string());
        assert!(def["properties"]["spec"].is_object());
        assert_eq!(def["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
        assert!(defs.contains_key("com.example.stable.v1.CronTabList"));
        insert_custom(&mut defs, &r, &Value::Null);
        assert_eq!(
            defs["com.example.stable.v1.CronTab"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
    }
}
