//! CustomResourceDefinitions: names defaulted and checked as the apiextensions-apiserver
//! does, the `Established` status set at once (names are accepted synchronously here), and
//! the custom resources served or withdrawn after every write.

use std::sync::Arc;

use rkube_core::validation::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use super::defaults::set_default;
use crate::ApiServer;

/// The CRD strategy.
pub struct CustomResourceDefinition;

impl Strategy for CustomResourceDefinition {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(names) = obj
            .pointer_mut("/spec/names")
            .and_then(Value::as_object_mut)
        {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            set_default(names, "singular", json!(kind.to_ascii_lowercase()));
            set_default(names, "listKind", json!(format!("{kind}List")));
        }
        if let Some(versions) = obj
            .pointer_mut("/spec/versions")
            .and_then(Value::as_array_mut)
        {
            for v in versions.iter_mut().filter_map(Value::as_object_mut) {
                set_default(v, "served", json!(true));
                set_default(v, "storage", json!(false));
            }
        }
        let storage: Vec<Value> = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .filter_map(|v| v.get("name").cloned())
            .collect();
        let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let now = crate::rest::now_rfc3339();
        let condition = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
        obj["status"] = json!({
            "conditions": [
                condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "acceptedNames": names,
            "storedVersions": storage,
        });
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        self.prepare_for_create(new);
        // Every version ever stored stays listed.
        let mut stored: Vec<Value> = old
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for v in new
            .pointer("/status/storedVersions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if !stored.contains(&v) {
                stored.push(v);
            }
        }
        new["status"]["storedVersions"] = json!(stored);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (group, plural, kind) = (
            s("/spec/group"),
            s("/spec/names/plural"),
            s("/spec/names/kind"),
        );
        if group.is_empty() {
            errs.push(FieldError::required("spec.group", ""));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                json!(group),
                "should be a domain with at least one dot",
            ));
        }
        if plural.is_empty() {
            errs.push(FieldError::required("spec.names.plural", ""));
        }
        if kind.is_empty() {
            errs.push(FieldError::required("spec.names.kind", ""));
        }
        let name = rkube_core::meta::name(obj);
        if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
            errs.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if !matches!(s("/spec/scope"), "Namespaced" | "Cluster") {
            errs.push(FieldError::not_supported(
                "spec.scope",
                json!(s("/spec/scope")),
                &["Cluster", "Namespaced"],
            ));
        }
        let versions = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if versions.is_empty() {
            errs.push(FieldError::invalid(
                "spec.versions",
                json!([]),
                "must have exactly one version marked as storage version",
            ));
        } else {
            let storage = versions
                .iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .count();
            if storage != 1 {
                errs.push(FieldError::invalid(
                    "spec.versions",
                    json!(
                        versions
                            .iter()
                            .filter_map(|v| v.get("name"))
                            .collect::<Vec<_>>()
                    ),
                    "must have exactly one version marked as storage version",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(super::immutable(new, old, "/spec/group", "spec.group"));
        errs
    }

    fn stored(
        &self,
        srv: &Arc<ApiServer>,
        _old: Option<&Value>,
        new: Option<&Value>,
        gone: Option<&Value>,
    ) {
        if let Some(crd) = new {
            srv.register_crd(crd);
        }
        if let Some(crd) = gone {
            srv.unregister_crd(crd);
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
            let srv = srv.clone();
            tokio::spawn(async move { srv.delete_custom_objects(&group, &plural).await });
        }
    }
}
