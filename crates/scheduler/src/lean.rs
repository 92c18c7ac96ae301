//! Pods as the scheduler reads them from its watch: everything except
//! `metadata.managedFields`, which scheduling never looks at. k8s-openapi holds each
//! managed-fields set as a `serde_json::Value` tree, and decoding those trees was as costly as
//! decoding the rest of the pod (half of the watch decode in the scheduler benchmark's
//! profile); upstream's clients keep them as raw bytes instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

/// A [`Pod`] decoded without its managedFields (`metadata.managedFields` is `None`).
#[derive(Clone, Debug, Default)]
pub struct LeanPod(pub Pod);

impl<'de> Deserialize<'de> for LeanPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: LeanMeta,
            #[serde(default)]
            spec: Option<PodSpec>,
            #[serde(default)]
            status: Option<PodStatus>,
        }
        let w = Wire::deserialize(d)?;
        Ok(LeanPod(Pod {
            metadata: w.metadata.into(),
            spec: w.spec,
            status: w.status,
        }))
    }
}

/// `ObjectMeta` without `managedFields` (unknown keys are skipped by serde, unparsed).
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(m: LeanMeta) -> ObjectMeta {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

impl k8s_openapi::Resource for LeanPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = <Pod as k8s_openapi::Resource>::Scope;
}

impl k8s_openapi::Metadata for LeanPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_everything_but_managed_fields() {
        let wire = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "web"}, "annotations": {"a": "b"}, "generateName": "p-",
                "creationTimestamp": "2026-11-22T10:00:00Z", "deletionTimestamp": "2026-11-22T10:01:00Z",
                "deletionGracePeriodSeconds": 30, "finalizers": ["f"], "generation": 2,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "o"}],
                "managedFields": [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {}}}}]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n"},
            "status": {"phase": "Running"},
        });
        let lean: LeanPod = serde_json::from_value(wire.clone()).unwrap();
        let mut full: Pod = serde_json::from_value(wire).unwrap();
        full.metadata.managed_fields = None;
        assert_eq!(lean.0, full);
    }
}
