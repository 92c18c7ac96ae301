//! Pod facts shared by the workload controllers: activity, readiness, availability, the
//! controller reference, and the order in which surplus pods are deleted.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// Whether a pod counts towards replicas: not terminating and not finished.
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Whether the pod has been ready for at least `min_ready_seconds`.
pub fn is_available(p: &Pod, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    let Some(c) = ready_condition(p).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time
        .as_ref()
        .is_some_and(|t| now.duration_since(t.0).as_secs() >= min_ready_seconds)
}

/// The uid of the pod's controller (the owner reference with `controller: true`).
pub fn controller_of(p: &Pod) -> Option<&str> {
    p.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// Sort key for choosing pods to delete, most expendable first, as upstream ranks them:
/// unscheduled before scheduled, pending before running, not ready before ready, more
/// restarts first, then the newest first.
pub fn deletion_rank(p: &Pod) -> (bool, u8, bool, i64, std::cmp::Reverse<i64>) {
    let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts: i64 = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count as i64).sum())
        .unwrap_or(0);
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        is_ready(p),
        -restarts,
        std::cmp::Reverse(created),
    )
}

/// Adds `owner` to (or, with None, removes `owner_uid` from) the pod's owner references;
/// returns the pod as updated, or None if it vanished or changed meanwhile.
pub async fn set_owner_references(
    api: &Api<Pod>,
    pod: &Pod,
    owner: Option<Value>,
    owner_uid: &str,
) -> Result<Option<Pod>, kube::Error> {
    let mut refs: Vec<Value> = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    refs.extend(owner);
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": pod.metadata.resource_version,
    }});
    let name = pod.metadata.name.clone().unwrap_or_default();
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}
