//! Serving custom resources: what the apiextensions-apiserver adds to upstream's apiserver.
//!
//! Each stored CustomResourceDefinition becomes registry rows (one per served version), a
//! schema for patching and field validation, printer columns for `kubectl get`, and OpenAPI
//! documents for `kubectl explain`. Registration happens synchronously after a CRD is written
//! (so `kubectl apply` of a CRD and then its objects works at once) and for every stored CRD at
//! start-up. Deleting a CRD deletes its objects.

use std::collections::HashMap;
use std::sync::Arc;

use rkube_core::registry::{ResourceType, STANDARD_VERBS};
use serde_json::Value;

use crate::ApiServer;

/// Printer columns of custom resources, by (group, version, plural).
pub type PrinterColumns = HashMap<(String, String, String), Arc<rkube_printers::CustomColumns>>;

/// Prefix under which CRDs are stored.
pub const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The registry rows a CRD defines, each with its version's schema and printer columns.
pub fn resources_of(crd: &Value) -> Vec<(ResourceType, Value, Value)> {
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let strings = |p: &str| -> Vec<String> {
        spec.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let (group, kind, plural) = (s("/group"), s("/names/kind"), s("/names/plural"));
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = match s("/names/singular") {
        x if x.is_empty() => kind.to_ascii_lowercase(),
        x => x,
    };
    spec.get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|v| {
            let version = v.get("name")?.as_str()?.to_string();
            let mut subresources = Vec::new();
            for sub in ["status", "scale"] {
                if v.pointer(&format!("/subresources/{sub}")).is_some() {
                    subresources.push(sub.to_string());
                }
            }
            let rt = ResourceType {
                group: group.clone(),
                version,
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: s("/scope") != "Cluster",
                short_names: strings("/names/shortNames"),
                categories: strings("/names/categories"),
                subresources,
                verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
                definition: String::new(),
            };
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .unwrap_or(Value::Null);
            let columns = v
                .get("additionalPrinterColumns")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            Some((rt, schema, columns))
        })
        .collect()
}

impl ApiServer {
    /// Serves the resources of a stored CRD (replacing what an older version of it defined).
    pub fn register_crd(self: &Arc<Self>, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        self.unregister(group, plural);
        let rows = resources_of(crd);
        {
            let mut reg = self.registry.write().expect("registry lock");
            let mut schemas = (**self.schemas.read().expect("schemas lock")).clone();
            let mut cols = self.printer_columns.write().expect("columns lock");
            for (rt, schema, columns) in &rows {
                reg.upsert(rt.clone());
                if !schema.is_null() {
                    schemas.insert(
                        rkube_openapi::custom::definition_of(rt),
                        rkube_openapi::from_openapi_v3(schema),
                    );
                }
                cols.insert(
                    (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
                    Arc::new(rkube_printers::custom_columns(columns)),
                );
            }
            *self.schemas.write().expect("schemas lock") = Arc::new(schemas);
        }
        self.rebuild_openapi(move |docs| {
            for (rt, schema, _) in &rows {
                docs.add_custom_resource(rt.clone(), schema);
            }
        });
    }

    /// Stops serving the resources of a deleted CRD.
    pub fn unregister_crd(self: &Arc<Self>, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.unregister(&group, &plural);
        self.rebuild_openapi(move |docs| docs.remove_custom(&group, &plural));
    }

    fn unregister(&self, group: &str, plural: &str) {
        self.registry
            .write()
            .expect("registry lock")
            .remove(group, plural);
        self.printer_columns
            .write()
            .expect("columns lock")
            .retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Registers every stored CRD (at start-up).
    pub fn load_crds(self: &Arc<Self>) {
        let (crds, _) = self.cache.list(CRD_PREFIX, None);
        for e in crds {
            self.register_crd(&e.object());
        }
    }

    /// The printer columns of a custom resource.
    pub fn custom_columns(&self, rt: &ResourceType) -> Option<Arc<rkube_printers::CustomColumns>> {
        self.printer_columns
            .read()
            .expect("columns lock")
            .get(&(rt.group.clone(), rt.version.clone(), rt.plural.clone()))
            .cloned()
    }

    /// Deletes every stored object of a custom resource (after its CRD is gone).
    pub async fn delete_custom_objects(&self, group: &str, plural: &str) {
        let prefix = format!("/registry/{group}/{plural}/");
        if let Ok((kvs, _)) = self.store.list(&prefix).await {
            for kv in kvs {
                let _ = self.store.delete(&kv.key, None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_of_a_crd() {
        let crd = json!({"spec": {"group": "stable.example.com", "scope": "Namespaced",
            "names": {"kind": "CronTab", "plural": "crontabs", "shortNames": ["ct"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                 "schema": {"openAPIV3Schema": {"type": "object"}},
                 "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}]},
                {"name": "v0", "served": false, "storage": false}]}});
        let rows = resources_of(&crd);
        assert_eq!(rows.len(), 1);
        let (rt, schema, cols) = &rows[0];
        assert_eq!(rt.singular, "crontab");
        assert_eq!(rt.subresources, vec!["status"]);
        assert!(rt.answers_to("ct"));
        assert_eq!(schema["type"], "object");
        assert_eq!(cols[0]["name"], "Spec");
    }
}
