//! Per-kind behaviour of the generic REST handler: upstream's `RESTCreateStrategy` /
//! `RESTUpdateStrategy`. One file per kind (or family of kinds); everything a kind does not
//! override falls back to the defaults here.

mod crd;
mod defaults;
pub mod event;
mod namespace;
mod networking;
mod pod;
mod priorityclass;
mod secret;
mod service;
mod storage;
mod workload;

pub use priorityclass::SYSTEM_PRIORITY_CLASSES;

use std::sync::Arc;

use futures::future::BoxFuture;
use rkube_core::registry::ResourceType;
use rkube_core::status::ApiError;
use rkube_core::validation::{self, FieldError};
use serde_json::Value;

use crate::ApiServer;
use crate::alloc::ServiceAllocators;

/// Resources held for an object being written, given back if the write fails.
#[derive(Debug, Default)]
pub struct Allocation {
    ips: Vec<std::net::Ipv4Addr>,
    ports: Vec<u16>,
}

impl Allocation {
    /// Gives everything back.
    pub fn release(self, alloc: &ServiceAllocators) {
        for ip in self.ips {
            alloc.release_ip(ip);
        }
        for p in self.ports {
            alloc.release_port(p);
        }
    }
}

/// How one kind is created, updated and validated.
pub trait Strategy: Send + Sync {
    /// Defaults and clears fields before a create (upstream's `PrepareForCreate` plus the
    /// defaulting functions).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Field errors of a new object (object metadata is checked by the caller).
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Defaults and restores fields before an update of the main resource.
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        self.prepare_for_create(new);
    }

    /// Field errors of an update (immutable fields).
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Admission that reads other stored objects, as upstream's admission plugins read their
    /// informers (e.g. Priority resolving a pod's PriorityClass). Runs after validation, on
    /// create (`old` is None) and on updates of the main resource. `name` is the name errors
    /// show: the `generateName` prefix while upstream would not have generated the name yet.
    fn admit<'a>(
        &'a self,
        _srv: &'a Arc<ApiServer>,
        _obj: &'a mut Value,
        _old: Option<&'a Value>,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Allocates what the object needs from cluster-wide pools (Service IPs and ports).
    fn allocate(
        &self,
        _alloc: &ServiceAllocators,
        _new: &mut Value,
        _old: Option<&Value>,
    ) -> Result<Allocation, ApiError> {
        Ok(Allocation::default())
    }

    /// Whether [`Strategy::allocate`] takes from cluster-wide pools.
    fn allocates(&self) -> bool {
        false
    }

    /// Returns what a deleted object held to the pools.
    fn release(&self, _alloc: &ServiceAllocators, _obj: &Value) {}

    /// Called after a write reached the store: `new` is the stored object (None when the
    /// object was deleted, then `gone` is its last state). For effects outside the object
    /// itself, such as serving a CRD's resources.
    fn stored(
        &self,
        _srv: &Arc<ApiServer>,
        _old: Option<&Value>,
        _new: Option<&Value>,
        _gone: Option<&Value>,
    ) {
    }

    /// Whether the name must be a DNS-1123 label rather than a subdomain.
    fn name_is_label(&self) -> bool {
        false
    }
}

struct Default_;
impl Strategy for Default_ {}

/// The strategy of a resource.
pub fn for_resource(rt: &ResourceType) -> &'static dyn Strategy {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => &namespace::Namespace,
        ("", "Pod") => &pod::Pod,
        ("", "Service") => &service::Service,
        ("", "Secret") => &secret::Secret,
        ("", "ConfigMap") => &secret::ConfigMap,
        ("apps", "Deployment") => &workload::Deployment,
        ("apps", "ReplicaSet") => &workload::ReplicaSet,
        ("", "ReplicationController") => &workload::ReplicationController,
        ("apps", "DaemonSet") => &workload::DaemonSet,
        ("apps", "StatefulSet") => &workload::StatefulSet,
        ("batch", "Job") => &workload::Job,
        ("batch", "CronJob") => &workload::CronJob,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &crd::CustomResourceDefinition,
        ("", "PersistentVolume") => &storage::PersistentVolume,
        ("", "PersistentVolumeClaim") => &storage::PersistentVolumeClaim,
        ("storage.k8s.io", "StorageClass") => &storage::StorageClass,
        ("networking.k8s.io", "NetworkPolicy") => &networking::NetworkPolicy,
        ("scheduling.k8s.io", "PriorityClass") => &priorityclass::PriorityClass,
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => &networking::Endpoints,
        ("", "Event") => &event::CoreEvent,
        ("events.k8s.io", "Event") => &event::EventsV1Event,
        _ => &Default_,
    }
}

/// Checks common to every object: name, namespace, labels, annotations (upstream's
/// `ValidateObjectMeta`).
pub fn validate_object_meta(
    rt: &ResourceType,
    obj: &Value,
    name_is_label: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = rkube_core::meta::name(obj);
    if name.is_empty() {
        errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        let problems = if name_is_label {
            validation::dns1123_label(name)
        } else if rt.kind == "Node" || rt.group.starts_with("rbac.") {
            // Nodes and RBAC objects accept path-segment names (e.g. `system:node:a`).
            path_segment(name)
        } else {
            validation::dns1123_subdomain(name)
        };
        for p in problems {
            errs.push(FieldError::invalid(
                "metadata.name",
                Value::String(name.into()),
                &p,
            ));
        }
    }
    if rt.namespaced && rkube_core::meta::namespace(obj).is_empty() {
        errs.push(FieldError::required("metadata.namespace", ""));
    }
    if let Some(l) = obj.pointer("/metadata/labels") {
        errs.extend(validation::labels(l, "metadata.labels"));
    }
    if let Some(a) = obj.pointer("/metadata/annotations") {
        errs.extend(validation::annotations(a, "metadata.annotations"));
    }
    errs
}

fn path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Immutable-field check shared by strategies: `path` (a JSON pointer) may not change.
pub fn immutable(new: &Value, old: &Value, pointer: &str, field: &str) -> Option<FieldError> {
    let (n, o) = (new.pointer(pointer), old.pointer(pointer));
    (n != o).then(|| {
        FieldError::invalid(
            field,
            n.cloned().unwrap_or(Value::Null),
            "field is immutable",
        )
    })
}
