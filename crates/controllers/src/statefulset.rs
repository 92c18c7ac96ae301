//! The StatefulSet controller: pods with stable identities `<set>-<ordinal>` (labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`,
//! `controller-revision-hash` = the revision's name; hostname and subdomain = serviceName),
//! each with its own PersistentVolumeClaims `<template>-<set>-<ordinal>` from
//! `volumeClaimTemplates`.
//!
//! OrderedReady creates pods in ordinal order, each only once its predecessors are Running
//! and Ready, and removes surplus pods from the highest ordinal down, one at a time;
//! Parallel does both at once. RollingUpdate replaces pods from the highest ordinal down to
//! `partition`, one at a time; OnDelete only recreates deleted pods at the update revision.
//! Templates are recorded as ControllerRevisions; `currentRevision` catches up with
//! `updateRevision` once every pod runs it and is ready.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::controllerrevision::{self as revisions, CONTROLLER_REVISION_HASH, Owner, Synced};
use crate::events::Recorder;
use crate::pods::{self, is_available, is_ready};

/// The label naming a StatefulSet pod.
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

pub use crate::Error;

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let sets: Api<StatefulSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
        client,
    });
    Controller::new(sets, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_s: Arc<StatefulSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("statefulset controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

/// The ordinal of a pod named `<set>-<ordinal>`, if it is one of the set's.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // "web-01" is not web's pod 1.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The name of a PVC for claim template `template` of pod `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// One existing pod of the set, as the plan needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Pod name.
    pub name: String,
    /// Its `controller-revision-hash` (a revision name).
    pub revision: String,
    /// Being deleted.
    pub terminating: bool,
    /// Running, Ready and available for minReadySeconds.
    pub healthy: bool,
    /// Succeeded or Failed: it must be replaced.
    pub finished: bool,
}

/// The set's shape for one reconcile.
#[derive(Debug, Clone)]
pub struct Shape {
    /// First ordinal (`spec.ordinals.start`).
    pub start: i32,
    /// Desired replicas.
    pub replicas: i32,
    /// podManagementPolicy Parallel.
    pub parallel: bool,
    /// RollingUpdate's partition; None for OnDelete.
    pub partition: Option<i32>,
    /// RollingUpdate's `maxUnavailable` resolved against replicas (upstream's
    /// MaxUnavailableStatefulSet); None when unset: one pod at a time, each replacement
    /// healthy before the next goes.
    pub max_unavailable: Option<i32>,
    /// The update revision's name.
    pub update_revision: String,
}

/// One action of a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod with this ordinal.
    Create(i32),
    /// Delete this pod.
    Delete(String),
}

/// Decides what to do next from the pods by ordinal: create missing pods and replace
/// finished ones, then remove surplus pods (highest first), then roll out the update
/// revision (highest first, down to the partition). OrderedReady stops at the first step
/// that must wait for a pod to become Running and Ready or to go away.
pub fn plan(shape: &Shape, members: &BTreeMap<i32, Member>) -> Vec<Step> {
    let mut steps = Vec::new();
    let end = shape.start.saturating_add(shape.replicas.max(0));
    let mut all_healthy = true;
    for ord in shape.start..end {
        let step = match members.get(&ord) {
            None => Some(Step::Create(ord)),
            Some(m) if m.finished && !m.terminating => Some(Step::Delete(m.name.clone())),
            Some(m) if m.terminating || !m.healthy => None,
            Some(_) => continue,
        };
        all_healthy = false;
        steps.extend(step);
        if !shape.parallel {
            return steps;
        }
    }
    let condemned: Vec<&Member> = members
        .iter()
        .rev()
        .filter(|(o, _)| **o < shape.start || **o >= end)
        .map(|(_, m)| m)
        .collect();
    if shape.parallel {
        let doomed = condemned.iter().filter(|m| !m.terminating);
        steps.extend(doomed.map(|m| Step::Delete(m.name.clone())));
    } else if let Some(m) = condemned.first() {
        if !m.terminating {
            steps.push(Step::Delete(m.name.clone()));
        }
        return steps;
    }
    if shape.max_unavailable.is_some() {
        // Unhealthy pods count against maxUnavailable instead of stopping the update;
        // OrderedReady has returned above already while any pod is unhealthy.
        steps.extend(rolling_steps(shape, members, end));
        return steps;
    }
    if !all_healthy {
        return steps;
    }
    steps.extend(rolling_step(shape, members, end));
    steps
}

/// The pods a RollingUpdate with `maxUnavailable` replaces now: as many old pods (highest
/// ordinal first, down to the partition) as the unavailable budget leaves room for, where
/// every missing, terminating or unhealthy pod of the set spends budget.
fn rolling_steps(shape: &Shape, members: &BTreeMap<i32, Member>, end: i32) -> Vec<Step> {
    let (Some(partition), Some(max)) = (shape.partition, shape.max_unavailable) else {
        return Vec::new();
    };
    let unavailable = (shape.start..end)
        .filter(|o| members.get(o).is_none_or(|m| m.terminating || !m.healthy))
        .count() as i32;
    let mut room = max.max(1) - unavailable;
    let floor = shape.start.saturating_add(partition.max(0));
    let mut steps = Vec::new();
    for ord in (floor..end).rev() {
        if room <= 0 {
            break;
        }
        if let Some(m) = members.get(&ord)
            && m.revision != shape.update_revision
            && !m.terminating
        {
            steps.push(Step::Delete(m.name.clone()));
            room -= 1;
        }
    }
    steps
}

/// `maxUnavailable` of a StatefulSet's RollingUpdate for `replicas` pods: percentages round
/// down, and at least one pod may always be unavailable (upstream's
/// `getStatefulSetMaxUnavailable`).
pub fn max_unavailable(v: &IntOrString, replicas: i32) -> i32 {
    let n = match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').trim().parse().unwrap_or(0);
            (pct * i64::from(replicas.max(0)) / 100) as i32
        }
    };
    n.max(1)
}

/// Which owners a claim should have under the retention policy (upstream's
/// `updateClaimOwnerRefForSetAndPod`): the set when `whenDeleted: Delete` (unless the pod
/// was scaled away under `whenScaled: Delete`), the pod when `whenScaled: Delete` and the pod
/// is outside the ordinal range. Returns the new ownerReferences, or None when `existing`
/// already is right. Other owners are kept.
pub fn claim_owner_refs(
    existing: &[Value],
    set_ref: &Value,
    pod_ref: &Value,
    delete_with_set: bool,
    delete_on_scale_down: bool,
    scaled_down: bool,
) -> Option<Vec<Value>> {
    let want_pod = delete_on_scale_down && scaled_down;
    let want_set = delete_with_set && !want_pod;
    let uid = |r: &Value| r.get("uid").cloned().unwrap_or(Value::Null);
    let (set_uid, pod_uid) = (uid(set_ref), uid(pod_ref));
    let has = |u: &Value| existing.iter().any(|r| &uid(r) == u);
    if has(&set_uid) == want_set && has(&pod_uid) == want_pod {
        return None;
    }
    let mut refs: Vec<Value> = existing
        .iter()
        .filter(|r| uid(r) != set_uid && uid(r) != pod_uid)
        .cloned()
        .collect();
    if want_set {
        refs.push(set_ref.clone());
    }
    if want_pod {
        refs.push(pod_ref.clone());
    }
    Some(refs)
}

/// The next pod a RollingUpdate replaces, if every pod above it is done.
fn rolling_step(shape: &Shape, members: &BTreeMap<i32, Member>, end: i32) -> Option<Step> {
    let partition = shape.partition?;
    let floor = shape.start.saturating_add(partition.max(0));
    for ord in (floor..end).rev() {
        let m = members.get(&ord)?;
        if m.terminating || !m.healthy {
            return None;
        }
        if m.revision != shape.update_revision {
            return Some(Step::Delete(m.name.clone()));
        }
    }
    None
}

/// Counts for the status from the set's pods.
#[derive(Debug, Default, PartialEq)]
pub struct Counts {
    /// Pods that exist.
    pub replicas: i32,
    /// Running and Ready.
    pub ready: i32,
    /// Ready for minReadySeconds.
    pub available: i32,
    /// Live pods at the current revision.
    pub current: i32,
    /// Live pods at the update revision.
    pub updated: i32,
}

fn count(pods: &[Pod], current: &str, update: &str, min_ready: i64) -> Counts {
    let now = jiff::Timestamp::now();
    let mut c = Counts::default();
    for p in pods {
        c.replicas += 1;
        if running_and_ready(p) {
            c.ready += 1;
            c.available += i32::from(is_available(p, min_ready, now));
        }
        if p.metadata.deletion_timestamp.is_none() {
            let rev = label(p, CONTROLLER_REVISION_HASH).unwrap_or_default();
            c.current += i32::from(rev == current);
            c.updated += i32::from(rev == update);
        }
    }
    c
}

fn label<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == Some("Running") && is_ready(p)
}

/// Everything one reconcile works from.
struct SetView {
    set: StatefulSet,
    name: String,
    ns: String,
    uid: String,
    selector: Selector,
    template: Value,
    service_name: String,
    claims: Vec<Value>,
    claim_labels: Value,
    delete_claims_with_set: bool,
    delete_claims_on_scale_down: bool,
    min_ready: i64,
}

impl SetView {
    fn read(set: &StatefulSet) -> Result<SetView, Error> {
        let spec = set.spec.clone().unwrap_or_default();
        let raw_selector = serde_json::to_value(&spec.selector).unwrap_or_default();
        let selector =
            Selector::from_label_selector(&raw_selector).map_err(|e| Error::Selector(e.0))?;
        if selector.is_empty() {
            return Err(Error::Selector("empty selector".into()));
        }
        let policy = spec.persistent_volume_claim_retention_policy.clone();
        let is_delete = |v: Option<String>| v.as_deref() == Some("Delete");
        Ok(SetView {
            name: set.name_any(),
            ns: set.namespace().unwrap_or_default(),
            uid: set.metadata.uid.clone().unwrap_or_default(),
            selector,
            template: serde_json::to_value(&spec.template).unwrap_or_default(),
            service_name: spec.service_name.clone().unwrap_or_default(),
            claims: spec
                .volume_claim_templates
                .iter()
                .flatten()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            claim_labels: raw_selector
                .get("matchLabels")
                .cloned()
                .unwrap_or(json!({})),
            delete_claims_with_set: is_delete(policy.as_ref().and_then(|p| p.when_deleted.clone())),
            delete_claims_on_scale_down: is_delete(policy.and_then(|p| p.when_scaled)),
            min_ready: spec.min_ready_seconds.unwrap_or(0) as i64,
            set: set.clone(),
        })
    }

    fn owner(&self) -> Owner {
        Owner {
            kind: "StatefulSet",
            name: self.name.clone(),
            namespace: self.ns.clone(),
            uid: self.uid.clone(),
        }
    }

    fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("StatefulSet".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.ns.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.set.metadata.resource_version.clone(),
            ..Default::default()
        }
    }

    fn claim_template_names(&self) -> Vec<String> {
        self.claims
            .iter()
            .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
            .map(String::from)
            .collect()
    }

    /// Pod `ordinal` from `template` at revision `revision`.
    fn new_pod(&self, template: &Value, revision: &str, ordinal: i32) -> Value {
        let name = format!("{}-{ordinal}", self.name);
        let meta = template.get("metadata").cloned().unwrap_or(json!({}));
        let mut labels = meta.get("labels").cloned().unwrap_or(json!({}));
        labels[POD_NAME] = json!(name);
        labels[POD_INDEX] = json!(ordinal.to_string());
        labels[CONTROLLER_REVISION_HASH] = json!(revision);
        let mut metadata = json!({
            "name": name,
            "namespace": self.ns,
            "labels": labels,
            "ownerReferences": [self.owner().owner_reference()],
        });
        if let Some(a) = meta.get("annotations") {
            metadata["annotations"] = a.clone();
        }
        let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
        spec["hostname"] = json!(name);
        if !self.service_name.is_empty() {
            spec["subdomain"] = json!(self.service_name);
        }
        let mut volumes: Vec<Value> = spec
            .get("volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in self.claim_template_names() {
            // A claim template shadows a template volume of the same name.
            volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(t.as_str()));
            let claim = claim_name(&t, &self.name, ordinal);
            volumes.push(json!({"name": t, "persistentVolumeClaim": {"claimName": claim}}));
        }
        if !volumes.is_empty() {
            spec["volumes"] = json!(volumes);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }

    /// PVC `ordinal` of claim template `claim`, owned by the set when the retention policy
    /// deletes claims with it.
    fn new_claim(&self, claim: &Value, ordinal: i32) -> Value {
        let t = claim
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut labels = claim
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        for (k, v) in self.claim_labels.as_object().into_iter().flatten() {
            labels[k] = v.clone();
        }
        let mut metadata = json!({
            "name": claim_name(t, &self.name, ordinal),
            "namespace": self.ns,
            "labels": labels,
        });
        if let Some(a) = claim.pointer("/metadata/annotations") {
            metadata["annotations"] = a.clone();
        }
        if self.delete_claims_with_set {
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": "StatefulSet", "name": self.name, "uid": self.uid,
                "controller": true, "blockOwnerDeletion": true}]);
        }
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
               "spec": claim.get("spec").cloned().unwrap_or(json!({}))})
    }
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let view = SetView::read(&set)?;
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let collision = status.collision_count.unwrap_or(0);
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &view.ns);
    let synced = revisions::sync(
        &rev_api,
        &view.owner(),
        &view.selector,
        &view.template,
        collision,
    )
    .await?;
    let (update, all_revisions) = match synced {
        Synced::Ready(u, all) => (*u, all),
        Synced::Collision => {
            patch_status(&ctx, &view, json!({"collisionCount": collision + 1})).await?;
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
    };
    let update_name = update.name_any();
    let current = status
        .current_revision
        .as_ref()
        .and_then(|c| all_revisions.iter().find(|r| &r.name_any() == c))
        .unwrap_or(&update)
        .clone();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.ns);
    let owned = claim_pods(&pods_api, &view).await?;
    let now = jiff::Timestamp::now();
    let members: BTreeMap<i32, Member> = owned
        .iter()
        .filter_map(|p| {
            let ord = ordinal_of(&view.name, &p.name_any())?;
            Some((ord, member(p, view.min_ready, now)))
        })
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let partition = (strategy.type_.as_deref() != Some("OnDelete")).then(|| {
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.partition)
            .unwrap_or(0)
    });
    let shape = Shape {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        replicas: spec.replicas.unwrap_or(1),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        partition,
        max_unavailable: strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.as_ref())
            .map(|m| max_unavailable(m, spec.replicas.unwrap_or(1))),
        update_revision: update_name.clone(),
    };
    sync_claim_owners(&ctx, &view, &shape, &owned).await?;
    let steps = plan(&shape, &members);
    for step in &steps {
        match step {
            Step::Create(ord) => {
                // Pods below the partition stay at the current revision.
                let index = ord - shape.start;
                let below = partition.is_some_and(|p| index < p);
                let rev = if below { &current } else { &update };
                create_member(&ctx, &view, rev, *ord).await?;
            }
            Step::Delete(name) => delete_member(&ctx, &view, name).await?,
        }
    }

    let counts = count(&owned, &current.name_any(), &update_name, view.min_ready);
    let complete = partition.is_some()
        && counts.updated == shape.replicas
        && counts.ready == shape.replicas
        && counts.replicas == shape.replicas;
    let (current_name, current_count) = if complete {
        (update_name.clone(), counts.updated)
    } else {
        (current.name_any(), counts.current)
    };
    let new_status = json!({
        "observedGeneration": set.metadata.generation,
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "currentReplicas": current_count,
        "updatedReplicas": counts.updated,
        "currentRevision": current_name,
        "updateRevision": update_name,
        "collisionCount": collision,
    });
    let old = serde_json::to_value(&status).unwrap_or_default();
    let changed = new_status
        .as_object()
        .into_iter()
        .flatten()
        .any(|(k, v)| old.get(k).unwrap_or(&json!(0)) != v);
    if changed {
        patch_status(&ctx, &view, new_status).await?;
    }

    let live: BTreeSet<String> = owned
        .iter()
        .filter_map(|p| label(p, CONTROLLER_REVISION_HASH).map(String::from))
        .collect();
    let keep = BTreeSet::from([current_name, update_name]);
    let limit = spec.revision_history_limit.unwrap_or(10);
    revisions::cleanup(&rev_api, &all_revisions, &keep, &live, limit).await?;
    Ok(if counts.ready > counts.available || !steps.is_empty() {
        // minReadySeconds passing raises no watch event.
        Action::requeue(Duration::from_secs(view.min_ready.clamp(1, 30) as u64))
    } else {
        Action::await_change()
    })
}

fn member(p: &Pod, min_ready: i64, now: jiff::Timestamp) -> Member {
    Member {
        name: p.name_any(),
        revision: label(p, CONTROLLER_REVISION_HASH)
            .unwrap_or_default()
            .to_string(),
        terminating: p.metadata.deletion_timestamp.is_some(),
        healthy: p.metadata.deletion_timestamp.is_none()
            && running_and_ready(p)
            && is_available(p, min_ready, now),
        finished: matches!(phase(p), Some("Succeeded" | "Failed")),
    }
}

async fn patch_status(ctx: &Ctx, view: &SetView, status: Value) -> Result<(), Error> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &view.ns);
    let patch = Patch::Merge(json!({"status": status}));
    api.patch_status(&view.name, &PatchParams::default(), &patch)
        .await?;
    Ok(())
}

/// Creates the pod's missing claims, then the pod.
async fn create_member(
    ctx: &Ctx,
    view: &SetView,
    revision: &ControllerRevision,
    ordinal: i32,
) -> Result<(), Error> {
    let pod_name = format!("{}-{ordinal}", view.name);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &view.ns);
    for claim in &view.claims {
        let pvc: PersistentVolumeClaim = serde_json::from_value(view.new_claim(claim, ordinal))
            .map_err(kube::Error::SerdeError)?;
        let pvc_name = pvc.name_any();
        match pvcs.create(&PostParams::default(), &pvc).await {
            Ok(_) => {
                let msg = format!(
                    "create Claim {pvc_name} Pod {pod_name} in StatefulSet {} success",
                    view.name
                );
                ctx.recorder
                    .record(&view.object_ref(), "Normal", "SuccessfulCreate", &msg)
                    .await;
            }
            // Claims outlive their pods: an existing one is simply re-used.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let data = revision
        .data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_default();
    let template = revisions::template_of(&data);
    let pod: Pod = serde_json::from_value(view.new_pod(&template, &revision.name_any(), ordinal))
        .map_err(kube::Error::SerdeError)?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.ns);
    match pods_api.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            let msg = format!(
                "create Pod {pod_name} in StatefulSet {} successful",
                view.name
            );
            ctx.recorder
                .record(&view.object_ref(), "Normal", "SuccessfulCreate", &msg)
                .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a pod (its claims' owners were brought in line with the retention policy
/// before, by [`sync_claim_owners`]).
async fn delete_member(ctx: &Ctx, view: &SetView, name: &str) -> Result<(), Error> {
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.ns);
    match pods_api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            let msg = format!("delete Pod {name} in StatefulSet {} successful", view.name);
            ctx.recorder
                .record(&view.object_ref(), "Normal", "SuccessfulDelete", &msg)
                .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Brings the ownerReferences of each pod's claims in line with the retention policy, as
/// upstream does on every sync: pods outside the ordinal range (about to be removed) hand
/// their claims to the pod under `whenScaled: Delete`, so the garbage collector deletes them
/// with it; `whenDeleted: Delete` makes the set their owner.
async fn sync_claim_owners(
    ctx: &Ctx,
    view: &SetView,
    shape: &Shape,
    owned: &[Pod],
) -> Result<(), Error> {
    let templates = view.claim_template_names();
    if templates.is_empty() {
        return Ok(());
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &view.ns);
    let claims: BTreeMap<String, PersistentVolumeClaim> = pvcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|c| (c.name_any(), c))
        .collect();
    let set_ref = view.owner().owner_reference();
    let end = shape.start.saturating_add(shape.replicas.max(0));
    for pod in owned {
        let Some(ord) = ordinal_of(&view.name, &pod.name_any()) else {
            continue;
        };
        let scaled_down = ord < shape.start || ord >= end;
        let pod_ref = json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name_any(),
                             "uid": pod.metadata.uid});
        for t in &templates {
            let Some(claim) = claims.get(&claim_name(t, &view.name, ord)) else {
                continue;
            };
            let existing: Vec<Value> = claim
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect();
            let Some(refs) = claim_owner_refs(
                &existing,
                &set_ref,
                &pod_ref,
                view.delete_claims_with_set,
                view.delete_claims_on_scale_down,
                scaled_down,
            ) else {
                continue;
            };
            let patch = json!({"metadata": {"ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version}});
            match pvcs
                .patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                // Gone or changed meanwhile: the next sync looks again.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The set's pods: owned ones still matching, plus adopted orphans named like members;
/// owned pods that stopped matching are released.
async fn claim_pods(api: &Api<Pod>, view: &SetView) -> Result<Vec<Pod>, Error> {
    let list = api.list(&ListParams::default()).await?;
    let mut owned = Vec::new();
    for pod in list.items {
        let matches = view.selector.matches(|k| label(&pod, k));
        let member = ordinal_of(&view.name, &pod.name_any()).is_some();
        match pods::controller_of(&pod) {
            Some(c) if c == view.uid && matches => owned.push(pod),
            Some(c) if c == view.uid => {
                pods::set_owner_references(api, &pod, None, &view.uid).await?;
            }
            None if matches && member && pod.metadata.deletion_timestamp.is_none() => {
                let reference = view.owner().owner_reference();
                let adopted = pods::set_owner_references(api, &pod, Some(reference), &view.uid);
                owned.extend(adopted.await?);
            }
            _ => {}
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(replicas: i32, parallel: bool, partition: Option<i32>) -> Shape {
        Shape {
            start: 0,
            replicas,
            parallel,
            partition,
            max_unavailable: None,
            update_revision: "web-new".into(),
        }
    }

    fn m(ord: i32, revision: &str, healthy: bool) -> (i32, Member) {
        let member = Member {
            name: format!("web-{ord}"),
            revision: revision.into(),
            terminating: false,
            healthy,
            finished: false,
        };
        (ord, member)
    }

    fn del(ord: i32) -> Step {
        Step::Delete(format!("web-{ord}"))
    }

    #[test]
    fn ordinals_parse_strictly() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "web-1-2"), None);
        assert_eq!(claim_name("www", "web", 2), "www-web-2");
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = shape(3, false, Some(0));
        assert_eq!(plan(&s, &BTreeMap::new()), vec![Step::Create(0)]);
        let waiting = BTreeMap::from([m(0, "web-new", false)]);
        assert!(plan(&s, &waiting).is_empty());
        let ready = BTreeMap::from([m(0, "web-new", true)]);
        assert_eq!(plan(&s, &ready), vec![Step::Create(1)]);
        // A hole is filled before anything else.
        let hole = BTreeMap::from([m(0, "web-new", true), m(2, "web-new", true)]);
        assert_eq!(plan(&s, &hole), vec![Step::Create(1)]);
    }

    #[test]
    fn parallel_creates_and_deletes_at_once() {
        let s = shape(3, true, Some(0));
        let got = plan(&s, &BTreeMap::from([m(1, "web-new", false)]));
        assert_eq!(got, vec![Step::Create(0), Step::Create(2)]);
        let surplus = BTreeMap::from([
            m(0, "web-new", true),
            m(1, "web-new", true),
            m(2, "web-new", true),
            m(3, "web-new", false),
            m(4, "web-new", true),
        ]);
        assert_eq!(plan(&s, &surplus), vec![del(4), del(3)]);
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_first_one_at_a_time() {
        let s = shape(1, false, Some(0));
        let all = BTreeMap::from([
            m(0, "web-new", true),
            m(1, "web-new", true),
            m(2, "web-new", true),
        ]);
        assert_eq!(plan(&s, &all), vec![del(2)]);
        let mut going = all.clone();
        going.get_mut(&2).unwrap().terminating = true;
        assert!(plan(&s, &going).is_empty());
        going.remove(&2);
        assert_eq!(plan(&s, &going), vec![del(1)]);
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition() {
        let old = BTreeMap::from([
            m(0, "web-old", true),
            m(1, "web-old", true),
            m(2, "web-old", true),
        ]);
        assert_eq!(plan(&shape(3, false, Some(0)), &old), vec![del(2)]);
        let mut half = old.clone();
        half.insert(2, m(2, "web-new", true).1);
        assert_eq!(plan(&shape(3, false, Some(0)), &half), vec![del(1)]);
        // The replacement must be ready before the next one goes.
        half.insert(2, m(2, "web-new", false).1);
        assert!(plan(&shape(3, false, Some(0)), &half).is_empty());
        // Nothing below the partition is touched; OnDelete touches nothing.
        let above = BTreeMap::from([
            m(0, "web-old", true),
            m(1, "web-old", true),
            m(2, "web-new", true),
        ]);
        assert!(plan(&shape(3, false, Some(2)), &above).is_empty());
        assert!(plan(&shape(3, false, None), &old).is_empty());
    }

    #[test]
    fn max_unavailable_replaces_several_at_once_above_the_partition() {
        let old: BTreeMap<i32, Member> = (0..5).map(|o| m(o, "web-old", true)).collect();
        let mut s = shape(5, false, Some(1));
        s.max_unavailable = Some(2);
        assert_eq!(plan(&s, &old), vec![del(4), del(3)]);
        // Two down already: nothing more goes (OrderedReady first waits for them anyway).
        let mut going = old.clone();
        going.get_mut(&4).unwrap().terminating = true;
        going.remove(&3);
        assert_eq!(plan(&s, &going), vec![Step::Create(3)]);
        // Parallel: one unhealthy pod leaves room for one more.
        let mut p = shape(5, true, Some(1));
        p.max_unavailable = Some(2);
        let mut one_down = old.clone();
        one_down.insert(4, m(4, "web-new", false).1);
        assert_eq!(plan(&p, &one_down), vec![del(3)]);
        // The partition holds: ordinal 0 is never replaced.
        let mut rest = old.clone();
        for o in 1..5 {
            rest.insert(o, m(o, "web-new", true).1);
        }
        assert!(plan(&p, &rest).is_empty());
        assert_eq!(max_unavailable(&IntOrString::String("50%".into()), 5), 2);
        assert_eq!(max_unavailable(&IntOrString::String("10%".into()), 5), 1);
        assert_eq!(max_unavailable(&IntOrString::Int(0), 5), 1);
        assert_eq!(max_unavailable(&IntOrString::Int(3), 5), 3);
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let set = json!({"kind": "StatefulSet", "uid": "s", "controller": true});
        let pod = json!({"kind": "Pod", "uid": "p"});
        let other = json!({"kind": "Thing", "uid": "o"});
        let kinds = |v: Option<Vec<Value>>| -> Option<Vec<String>> {
            v.map(|v| {
                v.iter()
                    .map(|r| r["kind"].as_str().unwrap().to_string())
                    .collect()
            })
        };
        // Retain/Retain: the set's and pod's references are removed, others kept.
        let both = vec![set.clone(), pod.clone(), other.clone()];
        assert_eq!(
            kinds(claim_owner_refs(&both, &set, &pod, false, false, false)),
            Some(vec!["Thing".into()])
        );
        // whenDeleted Delete: owned by the set, whether scaled down or not.
        assert_eq!(
            kinds(claim_owner_refs(&[], &set, &pod, true, false, true)),
            Some(vec!["StatefulSet".into()])
        );
        assert_eq!(
            claim_owner_refs(std::slice::from_ref(&set), &set, &pod, true, false, false),
            None
        );
        // whenScaled Delete: the pod owns the claim once it is out of range.
        assert_eq!(claim_owner_refs(&[], &set, &pod, false, true, false), None);
        assert_eq!(
            kinds(claim_owner_refs(&[], &set, &pod, false, true, true)),
            Some(vec!["Pod".into()])
        );
        // Delete/Delete: the set in range, the pod instead of the set out of range.
        assert_eq!(
            kinds(claim_owner_refs(
                std::slice::from_ref(&pod),
                &set,
                &pod,
                true,
                true,
                false
            )),
            Some(vec!["StatefulSet".into()])
        );
        assert_eq!(
            kinds(claim_owner_refs(
                std::slice::from_ref(&set),
                &set,
                &pod,
                true,
                true,
                true
            )),
            Some(vec!["Pod".into()])
        );
    }

    #[test]
    fn finished_pods_are_replaced() {
        let mut members = BTreeMap::from([m(0, "web-new", false)]);
        members.get_mut(&0).unwrap().finished = true;
        assert_eq!(plan(&shape(1, false, Some(0)), &members), vec![del(0)]);
    }

    #[test]
    fn counts_follow_revisions() {
        let pod = |name: &str, rev: &str, ready: bool| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {CONTROLLER_REVISION_HASH: rev}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready",
                    "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap()
        };
        let pods = vec![
            pod("web-0", "a", true),
            pod("web-1", "b", true),
            pod("web-2", "b", false),
        ];
        let c = count(&pods, "a", "b", 0);
        assert_eq!(
            c,
            Counts {
                replicas: 3,
                ready: 2,
                available: 2,
                current: 1,
                updated: 2
            }
        );
    }

    #[test]
    fn pods_carry_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}],
                             "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {}}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}},
        }))
        .unwrap();
        let view = SetView::read(&set).unwrap();
        let pod = view.new_pod(&view.template, "web-abc", 2);
        assert_eq!(pod["metadata"]["name"], "web-2");
        assert_eq!(pod["metadata"]["labels"][POD_NAME], "web-2");
        assert_eq!(pod["metadata"]["labels"][POD_INDEX], "2");
        assert_eq!(
            pod["metadata"]["labels"][CONTROLLER_REVISION_HASH],
            "web-abc"
        );
        assert_eq!(pod["spec"]["hostname"], "web-2");
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-2"}}])
        );
        let claim = view.new_claim(&view.claims[0], 2);
        assert_eq!(claim["metadata"]["name"], "www-web-2");
        assert_eq!(claim["metadata"]["labels"]["app"], "nginx");
        assert_eq!(claim["metadata"]["ownerReferences"][0]["uid"], "u1");
    }
}
