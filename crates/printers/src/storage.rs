//! Storage: PersistentVolume, PersistentVolumeClaim (core group) and
//! StorageClass (`storage.k8s.io`).
//!
//! Quantities print as stored; upstream re-serialises them canonically
//! (e.g. `1024Mi` as `1Gi`), which only differs for non-canonical input.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{access_modes, age, arr_at, name, opt_str, present, scalar_text, str_at};
use crate::{AGE, Column, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "",
        kind: "PersistentVolume",
        columns: PERSISTENT_VOLUME,
        cells: persistent_volume,
    },
    Printer {
        group: "",
        kind: "PersistentVolumeClaim",
        columns: PERSISTENT_VOLUME_CLAIM,
        cells: persistent_volume_claim,
    },
    Printer {
        group: "storage.k8s.io",
        kind: "StorageClass",
        columns: STORAGE_CLASS,
        cells: storage_class,
    },
];

const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
const VOLUME_MODE: Column = wide(
    "VolumeMode",
    "string",
    "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
);
const VAC: Column = col(
    "VolumeAttributesClass",
    "string",
    "Name of VolumeAttributesClass to which this persistent volume belongs.",
);

const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
    ),
    col(
        "StorageClass",
        "string",
        "storageClassName is the name of StorageClass to which this persistent volume belongs.",
    ),
    VAC,
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.",
    ),
    AGE,
    VOLUME_MODE,
];

fn quantity(obj: &Value, ptr: &str) -> String {
    obj.pointer(ptr)
        .filter(|v| !v.is_null())
        .map_or_else(|| "0".to_string(), scalar_text)
}

fn class_of(obj: &Value) -> &str {
    let annotation = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .and_then(Value::as_str);
    annotation.unwrap_or_else(|| str_at(obj, "/spec/storageClassName"))
}

fn unset_if_missing(obj: &Value, ptr: &str) -> Value {
    Value::from(opt_str(obj, ptr).unwrap_or("<unset>"))
}

fn persistent_volume(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match obj.pointer("/spec/claimRef").filter(|c| c.is_object()) {
        Some(c) => format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name")),
        None => String::new(),
    };
    let phase = if present(obj, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    };
    vec![
        name(obj),
        Value::from(quantity(obj, "/spec/capacity/storage")),
        Value::from(access_modes(arr_at(obj, "/spec/accessModes"))),
        Value::from(str_at(obj, "/spec/persistentVolumeReclaimPolicy")),
        Value::from(phase),
        Value::from(claim),
        Value::from(class_of(obj)),
        unset_if_missing(obj, "/spec/volumeAttributesClassName"),
        Value::from(str_at(obj, "/status/reason")),
        age(obj, now),
        unset_if_missing(obj, "/spec/volumeMode"),
    ]
}

const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col(
        "StorageClass",
        "string",
        "storageClassName is the name of the StorageClass required by the claim.",
    ),
    VAC,
    AGE,
    VOLUME_MODE,
];

fn persistent_volume_claim(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if present(obj, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        str_at(obj, "/status/phase")
    };
    let volume = str_at(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(obj, "/status/capacity/storage"),
            access_modes(arr_at(obj, "/status/accessModes")),
        )
    };
    let vac = opt_str(obj, "/spec/volumeAttributesClassName")
        .filter(|s| !s.is_empty())
        .unwrap_or("<unset>");
    vec![
        name(obj),
        Value::from(phase),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(class_of(obj)),
        Value::from(vac),
        age(obj, now),
        unset_if_missing(obj, "/spec/volumeMode"),
    ]
}

const STORAGE_CLASS: &[Column] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

fn is_default_class(obj: &Value) -> bool {
    let annotations = obj.pointer("/metadata/annotations");
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"))
}

fn storage_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut class_name = str_at(obj, "/metadata/name").to_string();
    if is_default_class(obj) {
        class_name.push_str(" (default)");
    }
    vec![
        Value::from(class_name),
        Value::from(str_at(obj, "/provisioner")),
        Value::from(opt_str(obj, "/reclaimPolicy").unwrap_or("Delete")),
        Value::from(opt_str(obj, "/volumeBindingMode").unwrap_or("Immediate")),
        Value::from(
            obj.pointer("/allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn persistent_volumes() {
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "pv1", "creationTimestamp": ago(45)},
                    "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                        "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"},
                        "storageClassName": "standard", "volumeMode": "Filesystem"},
                    "status": {"phase": "Bound"}}),
                json!([
                    "pv1",
                    "10Gi",
                    "RWO,ROX",
                    "Retain",
                    "Bound",
                    "default/data",
                    "standard",
                    "<unset>",
                    "",
                    "45s",
                    "Filesystem"
                ]),
            ),
            (
                json!({"metadata": {"name": "pv2", "deletionTimestamp": ago(1),
                    "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}}, "status": {"phase": "Released", "reason": "X"}}),
                json!([
                    "pv2",
                    "0",
                    "",
                    "",
                    "Terminating",
                    "",
                    "old",
                    "<unset>",
                    "X",
                    "<unknown>",
                    "<unset>"
                ]),
            ),
        ] {
            check("", "PersistentVolume", obj, expect);
        }
    }

    #[test]
    fn persistent_volume_claims() {
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "data", "creationTimestamp": ago(45)},
                    "spec": {"volumeName": "pv1", "storageClassName": "standard", "resources": {"requests": {"storage": "5Gi"}},
                        "volumeMode": "Filesystem"},
                    "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}}),
                json!([
                    "data",
                    "Bound",
                    "pv1",
                    "10Gi",
                    "RWO",
                    "standard",
                    "<unset>",
                    "45s",
                    "Filesystem"
                ]),
            ),
            (
                json!({"metadata": {"name": "data", "creationTimestamp": ago(45)},
                    "spec": {"storageClassName": "fast", "volumeAttributesClassName": "gold"}, "status": {"phase": "Pending"}}),
                json!([
                    "data", "Pending", "", "", "", "fast", "gold", "45s", "<unset>"
                ]),
            ),
        ] {
            check("", "PersistentVolumeClaim", obj, expect);
        }
    }

    #[test]
    fn storage_classes() {
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "standard", "creationTimestamp": ago(45),
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true}),
                json!([
                    "standard (default)",
                    "rancher.io/local-path",
                    "Delete",
                    "WaitForFirstConsumer",
                    true,
                    "45s"
                ]),
            ),
            (
                json!({"metadata": {"name": "slow"}, "provisioner": "x"}),
                json!(["slow", "x", "Delete", "Immediate", false, "<unknown>"]),
            ),
        ] {
            check("storage.k8s.io", "StorageClass", obj, expect);
        }
    }
}
