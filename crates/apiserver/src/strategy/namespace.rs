//! Namespaces: DNS-label names, the `kubernetes` finalizer that the namespace controller
//! removes once the namespace is empty, `Active`/`Terminating` phases, and the automatic
//! `kubernetes.io/metadata.name` label.

use serde_json::{Value, json};

use super::Strategy;
use super::defaults::{object_at, set_default};

/// The namespace strategy.
pub struct Namespace;

/// Label every namespace carries with its own name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl Strategy for Namespace {
    fn prepare_for_create(&self, obj: &mut Value) {
        let name = rkube_core::meta::name(obj).to_string();
        if let Some(map) = obj.as_object_mut() {
            if let Some(spec) = object_at(map, "spec") {
                set_default(spec, "finalizers", json!(["kubernetes"]));
            }
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        if !name.is_empty() {
            let meta = rkube_core::meta::metadata_mut(obj);
            if let Some(labels) = object_at(meta, "labels") {
                labels.insert(NAME_LABEL.into(), json!(name));
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // spec.finalizers change only through the finalize subresource; status through status.
        let name = rkube_core::meta::name(old).to_string();
        if let Some(map) = new.as_object_mut() {
            map.insert("spec".into(), old.get("spec").cloned().unwrap_or(json!({})));
        }
        let meta = rkube_core::meta::metadata_mut(new);
        if let Some(labels) = object_at(meta, "labels") {
            labels.insert(NAME_LABEL.into(), json!(name));
        }
    }

    fn name_is_label(&self) -> bool {
        true
    }
}
