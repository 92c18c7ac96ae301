//! PersistentVolumes, PersistentVolumeClaims and StorageClasses: upstream's defaults and the
//! initial `Pending` phase (the volume binder moves it on).

use serde_json::{Value, json};

use super::Strategy;
use super::defaults::{object_at, set_default};

/// The PersistentVolume strategy.
pub struct PersistentVolume;
/// The PersistentVolumeClaim strategy.
pub struct PersistentVolumeClaim;
/// The StorageClass strategy.
pub struct StorageClass;

fn spec_defaults(obj: &mut Value, defaults: &[(&str, Value)]) {
    if let Some(spec) = obj.as_object_mut().and_then(|m| object_at(m, "spec")) {
        for (k, v) in defaults {
            set_default(spec, k, v.clone());
        }
    }
}

fn pending_status(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({"phase": "Pending"}));
    }
}

impl Strategy for PersistentVolume {
    fn prepare_for_create(&self, obj: &mut Value) {
        spec_defaults(
            obj,
            &[
                ("persistentVolumeReclaimPolicy", json!("Retain")),
                ("volumeMode", json!("Filesystem")),
            ],
        );
        pending_status(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        spec_defaults(
            new,
            &[
                ("persistentVolumeReclaimPolicy", json!("Retain")),
                ("volumeMode", json!("Filesystem")),
            ],
        );
    }
}

impl Strategy for PersistentVolumeClaim {
    fn prepare_for_create(&self, obj: &mut Value) {
        spec_defaults(obj, &[("volumeMode", json!("Filesystem"))]);
        pending_status(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        spec_defaults(new, &[("volumeMode", json!("Filesystem"))]);
    }
}

impl Strategy for StorageClass {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            set_default(m, "reclaimPolicy", json!("Delete"));
            set_default(m, "volumeBindingMode", json!("Immediate"));
        }
    }
}
