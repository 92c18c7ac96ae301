//! The Deployment controller: one ReplicaSet per pod template (named
//! `<deployment>-<pod-template-hash>`), rolled out by the RollingUpdate (maxSurge /
//! maxUnavailable) or Recreate strategy, numbered by the `deployment.kubernetes.io/revision`
//! annotation (a rollback re-uses the old ReplicaSet under a new revision), old ReplicaSets
//! kept up to `revisionHistoryLimit`, the Available / Progressing conditions `kubectl
//! rollout status` reads, and ReplicaFailure copied from the ReplicaSets.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::events::Recorder;

/// Label that ties a ReplicaSet and its pods to one pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotation holding a ReplicaSet's revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation listing the revisions a re-used ReplicaSet had before.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

pub use crate::Error;

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let deployments: Api<Deployment> = Api::all(client.clone());
    let replicasets: Api<ReplicaSet> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
    });
    Controller::new(deployments, watcher::Config::default())
        .owns(replicasets, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_d: Arc<Deployment>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("deployment controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

/// Go's FNV-32a, which upstream hashes pod templates with.
fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c9dc5u32, |h, b| {
        (h ^ *b as u32).wrapping_mul(0x0100_0193)
    })
}

/// The pod-template-hash of a template: FNV-32a of its canonical JSON (plus the collision
/// count), rendered through upstream's safe alphabet so it reads like upstream's hashes.
pub fn template_hash(template: &Value, collision_count: i32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = serde_json::to_string(template).unwrap_or_default();
    if collision_count > 0 {
        text.push_str(&collision_count.to_string());
    }
    fnv32a(text.as_bytes())
        .to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// A template without the pod-template-hash label, for comparing a ReplicaSet's with the
/// Deployment's.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    t
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// maxSurge / maxUnavailable resolved against `replicas` (percentages round up for surge,
/// down for unavailability, as upstream).
fn resolve(v: Option<&IntOrString>, replicas: i32, round_up: bool, default: &str) -> i32 {
    let v = v.cloned().unwrap_or(IntOrString::String(default.into()));
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = pct * replicas as f64 / 100.0;
            if round_up {
                x.ceil() as i32
            } else {
                x.floor() as i32
            }
        }
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let selector =
        Selector::from_label_selector(&serde_json::to_value(&spec.selector).unwrap_or_default())
            .map_err(|e| Error::Selector(e.0))?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default().labels(&selector.to_string()))
        .await?
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let existing_new = owned.iter().find(|rs| {
        let t = rs.spec.as_ref().and_then(|s| s.template.as_ref());
        without_hash(&serde_json::to_value(t).unwrap_or_default()) == template
    });
    let max_revision = owned.iter().map(revision_of).max().unwrap_or(0);
    let mut old: Vec<ReplicaSet> = owned
        .iter()
        .filter(|rs| existing_new.is_none_or(|n| n.metadata.uid != rs.metadata.uid))
        .cloned()
        .collect();
    old.sort_by_key(revision_of);

    if spec.paused == Some(true) {
        sync_status(&ctx, &d, existing_new, &old, replicas, &spec).await?;
        return Ok(Action::await_change());
    }

    let strategy = spec.strategy.clone().unwrap_or_default();
    let recreate = strategy.type_.as_deref() == Some("Recreate");
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let max_surge = if recreate {
        0
    } else {
        resolve(rolling.max_surge.as_ref(), replicas, true, "25%")
    };
    let mut max_unavailable = if recreate {
        replicas
    } else {
        resolve(rolling.max_unavailable.as_ref(), replicas, false, "25%")
    };
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let old_replicas: i32 = old.iter().map(spec_replicas).sum();

    // The ReplicaSet of the current template, created or brought to the newest revision.
    let new_rs = match existing_new {
        Some(rs) => {
            let rs = rs.clone();
            if revision_of(&rs) < max_revision || rs.annotations().get(REVISION).is_none() {
                bump_revision(&rs_api, &rs, max_revision + 1, &d).await?
            } else if d.annotations().get(CHANGE_CAUSE) != rs.annotations().get(CHANGE_CAUSE) {
                // The change cause recorded on the Deployment belongs to its current revision.
                let cause = d.annotations().get(CHANGE_CAUSE);
                let patch = json!({"metadata": {"annotations": {CHANGE_CAUSE: cause}}});
                rs_api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?
            } else {
                rs
            }
        }
        None => {
            let initial = if recreate {
                if old_replicas > 0 { 0 } else { replicas }
            } else if old.is_empty() {
                replicas
            } else {
                (replicas + max_surge - old_replicas).clamp(0, replicas)
            };
            let created = create_new_rs(
                &rs_api,
                &d,
                &template,
                max_revision + 1,
                initial,
                replicas + max_surge,
            )
            .await?;
            if initial > 0 {
                let msg = format!(
                    "Scaled up replica set {} from 0 to {initial}",
                    created.name_any()
                );
                ctx.recorder
                    .record(
                        &crate::events::reference(d.as_ref()),
                        "Normal",
                        "ScalingReplicaSet",
                        &msg,
                    )
                    .await;
            }
            created
        }
    };

    if recreate {
        let old_running: i32 = old.iter().map(|rs| status_of(rs).0).sum();
        for rs in old.iter().filter(|rs| spec_replicas(rs) > 0) {
            scale(&ctx, &d, &rs_api, rs, 0).await?;
        }
        if old_replicas == 0 && old_running == 0 && spec_replicas(&new_rs) != replicas {
            scale(&ctx, &d, &rs_api, &new_rs, replicas).await?;
        }
    } else {
        // Scale up the new ReplicaSet within maxSurge.
        let new_replicas = spec_replicas(&new_rs);
        let total: i32 = old_replicas + new_replicas;
        if new_replicas < replicas {
            let room = replicas + max_surge - total;
            let up = room.min(replicas - new_replicas);
            if up > 0 {
                scale(&ctx, &d, &rs_api, &new_rs, new_replicas + up).await?;
            }
        } else if new_replicas > replicas {
            scale(&ctx, &d, &rs_api, &new_rs, replicas).await?;
        }
        // Scale down old ReplicaSets within maxUnavailable, oldest first, as upstream's
        // reconcileOldReplicaSets: first the replicas that are not available anyway, then
        // as many available ones as the availability budget allows.
        let all_replicas = old_replicas + spec_replicas(&new_rs);
        let min_available = replicas - max_unavailable;
        let new_unavailable = (spec_replicas(&new_rs) - status_of(&new_rs).2).max(0);
        let mut max_scaled_down = all_replicas - min_available - new_unavailable;
        let mut targets: Vec<i32> = old.iter().map(spec_replicas).collect();
        for (rs, target) in old.iter().zip(targets.iter_mut()) {
            if max_scaled_down <= 0 {
                break;
            }
            let unhealthy = (*target - status_of(rs).2).max(0).min(max_scaled_down);
            *target -= unhealthy;
            max_scaled_down -= unhealthy;
        }
        let available: i32 = owned.iter().map(|rs| status_of(rs).2).sum();
        let mut budget = (available - min_available).max(0);
        for target in targets.iter_mut() {
            let down = (*target).min(budget);
            *target -= down;
            budget -= down;
        }
        for (rs, target) in old.iter().zip(targets) {
            if target != spec_replicas(rs) {
                scale(&ctx, &d, &rs_api, rs, target).await?;
            }
        }
    }

    cleanup(&rs_api, &old, spec.revision_history_limit.unwrap_or(10)).await?;
    // Re-read: the status reflects what the ReplicaSets report after the changes above.
    let fresh_new = rs_api.get_opt(&new_rs.name_any()).await?;
    let mut fresh_old = Vec::new();
    for rs in &old {
        if let Some(r) = rs_api.get_opt(&rs.name_any()).await? {
            fresh_old.push(r);
        }
    }
    let done = sync_status(&ctx, &d, fresh_new.as_ref(), &fresh_old, replicas, &spec).await?;
    Ok(if done {
        Action::await_change()
    } else {
        // Progress deadlines are checked even when nothing changes.
        Action::requeue(Duration::from_secs(5))
    })
}

async fn create_new_rs(
    api: &Api<ReplicaSet>,
    d: &Deployment,
    template: &Value,
    revision: i64,
    replicas: i32,
    max_replicas: i32,
) -> Result<ReplicaSet, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let hash = template_hash(template, collision);
    let mut t = template.clone();
    t["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
    let mut selector = serde_json::to_value(&spec.selector).unwrap_or(json!({}));
    selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
    let mut labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
    let mut annotations: std::collections::BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/last-applied") && *k != REVISION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(
        DESIRED_REPLICAS.into(),
        spec.replicas.unwrap_or(1).to_string(),
    );
    annotations.insert(MAX_REPLICAS.into(), max_replicas.to_string());
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.name_any(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", d.name_any()),
            "namespace": d.namespace(),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": spec.min_ready_seconds.unwrap_or(0),
            "selector": selector,
            "template": t,
        },
    });
    let rs: ReplicaSet = serde_json::from_value(rs).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &rs).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // A ReplicaSet of that name exists but is not ours (or not this template):
            // upstream bumps collisionCount so the next hash differs.
            let dapi: Api<Deployment> =
                Api::namespaced(api_client(api), &d.namespace().unwrap_or_default());
            let patch = json!({"status": {"collisionCount": collision + 1}});
            dapi.patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Err(kube::Error::Api(e).into())
        }
        Err(e) => Err(e.into()),
    }
}

fn api_client(api: &Api<ReplicaSet>) -> Client {
    api.clone().into_client()
}

/// Makes an old ReplicaSet the newest revision again (a rollback), remembering its former
/// revision as upstream does.
async fn bump_revision(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    revision: i64,
    d: &Deployment,
) -> Result<ReplicaSet, Error> {
    let old = rs.annotations().get(REVISION).cloned();
    let mut annotations = json!({REVISION: revision.to_string()});
    if let Some(old) = old {
        let history = match rs.annotations().get(REVISION_HISTORY) {
            Some(h) if !h.is_empty() => format!("{h},{old}"),
            _ => old,
        };
        annotations[REVISION_HISTORY] = json!(history);
    }
    if let Some(cause) = d.annotations().get(CHANGE_CAUSE) {
        annotations[CHANGE_CAUSE] = json!(cause);
    }
    let patch = json!({"metadata": {"annotations": annotations}});
    Ok(api
        .patch(
            &rs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?)
}

async fn scale(
    ctx: &Ctx,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    to: i32,
) -> Result<(), Error> {
    let from = spec_replicas(rs);
    if from == to {
        return Ok(());
    }
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({
        "metadata": {"annotations": {DESIRED_REPLICAS: replicas.to_string()}},
        "spec": {"replicas": to},
    });
    api.patch(
        &rs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let verb = if to > from { "up" } else { "down" };
    let msg = format!(
        "Scaled {verb} replica set {} from {from} to {to}",
        rs.name_any()
    );
    ctx.recorder
        .record(
            &crate::events::reference(d),
            "Normal",
            "ScalingReplicaSet",
            &msg,
        )
        .await;
    Ok(())
}

/// Deletes the oldest drained ReplicaSets beyond the history limit.
async fn cleanup(api: &Api<ReplicaSet>, old: &[ReplicaSet], limit: i32) -> Result<(), Error> {
    let drained: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| {
            spec_replicas(rs) == 0
                && status_of(rs).0 == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let excess = drained.len().saturating_sub(limit.max(0) as usize);
    for rs in drained.iter().take(excess) {
        match api
            .delete(&rs.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    previous: Option<&DeploymentCondition>,
) -> DeploymentCondition {
    let status = if status { "True" } else { "False" }.to_string();
    let now = Time(jiff::Timestamp::now());
    // The transition time moves only when the status does; the update time on every change.
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone().unwrap_or(now.clone()),
        _ => now.clone(),
    };
    let update = match previous {
        Some(p) if p.status == status && p.reason.as_deref() == Some(reason) => {
            p.last_update_time.clone().unwrap_or(now.clone())
        }
        _ => now,
    };
    DeploymentCondition {
        type_: type_.into(),
        status,
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(transition),
        last_update_time: Some(update),
    }
}

/// Writes the Deployment's status; returns whether the rollout is complete.
async fn sync_status(
    ctx: &Ctx,
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    replicas: i32,
    spec: &k8s_openapi::api::apps::v1::DeploymentSpec,
) -> Result<bool, Error> {
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(old.iter()).collect();
    let total: i32 = all.iter().map(|rs| status_of(rs).0).sum();
    let ready: i32 = all.iter().map(|rs| status_of(rs).1).sum();
    let available: i32 = all.iter().map(|rs| status_of(rs).2).sum();
    let updated = new_rs.map(|rs| status_of(rs).0).unwrap_or(0);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let max_unavailable = if strategy.type_.as_deref() == Some("Recreate") {
        0
    } else {
        resolve(
            strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.as_ref()),
            replicas,
            false,
            "25%",
        )
    };
    let prev = d.status.clone().unwrap_or_default();
    let prev_cond = |t: &str| {
        prev.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .cloned()
    };
    let minimum = available >= replicas - max_unavailable;
    let available_cond = condition(
        "Available",
        minimum,
        if minimum {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        if minimum {
            "Deployment has minimum availability.".into()
        } else {
            "Deployment does not have minimum availability.".into()
        },
        prev_cond("Available").as_ref(),
    );
    let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    let complete = new_rs.is_some()
        && updated == replicas
        && total == replicas
        && available == replicas
        && old.iter().all(|rs| status_of(rs).0 == 0);
    let previous_progress = prev_cond("Progressing");
    let deadline = spec.progress_deadline_seconds.unwrap_or(600) as i64;
    let stalled = !complete
        && previous_progress.as_ref().is_some_and(|p| {
            p.last_update_time
                .as_ref()
                .is_some_and(|t| jiff::Timestamp::now().duration_since(t.0).as_secs() > deadline)
        });
    let changed_counts = prev.updated_replicas.unwrap_or(0) != updated
        || prev.available_replicas.unwrap_or(0) != available
        || prev.replicas.unwrap_or(0) != total;
    let progressing = if spec.paused == Some(true) {
        condition(
            "Progressing",
            false,
            "DeploymentPaused",
            "Deployment is paused".into(),
            previous_progress.as_ref(),
        )
    } else if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            previous_progress.as_ref(),
        )
    } else if stalled && !changed_counts {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            previous_progress.as_ref(),
        )
    } else {
        let mut c = condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
            previous_progress.as_ref(),
        );
        if changed_counts {
            c.last_update_time = Some(Time(jiff::Timestamp::now()));
        }
        c
    };
    // A ReplicaSet's ReplicaFailure (the new one's first) is the Deployment's, as upstream's
    // syncRolloutStatus copies it; gone from the ReplicaSets, gone here.
    let replica_failure = all
        .iter()
        .find_map(|rs| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "ReplicaFailure")
                .cloned()
        })
        .map(|c| DeploymentCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: c.message,
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time,
        });
    let mut conditions = vec![available_cond, progressing];
    conditions.extend(replica_failure);
    let status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (replicas - available).max(0),
        "conditions": conditions,
        "collisionCount": prev.collision_count,
    });
    let current = serde_json::to_value(&prev).unwrap_or_default();
    let same = [
        "observedGeneration",
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
        "unavailableReplicas",
    ]
    .iter()
    .all(|k| current.get(*k).unwrap_or(&json!(0)) == status.get(*k).unwrap_or(&json!(0)))
        && conditions_equal(&current, &status);
    if !same {
        let api: Api<Deployment> =
            Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
        api.patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
    }
    Ok(complete)
}

/// Conditions compared without their timestamps.
fn conditions_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
        v.get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| (c["type"].clone(), c["status"].clone(), c["reason"].clone()))
            .collect()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_look_like_upstream_and_are_stable() {
        let t = json!({"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}});
        let h = template_hash(&t, 0);
        assert_eq!(h, template_hash(&t, 0));
        assert_ne!(h, template_hash(&t, 1));
        assert!(
            h.len() >= 8 && h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
    }

    #[test]
    fn surge_and_unavailable_resolve_like_upstream() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(resolve(Some(&pct), 10, true, "25%"), 3);
        assert_eq!(resolve(Some(&pct), 10, false, "25%"), 2);
        assert_eq!(resolve(Some(&IntOrString::Int(1)), 10, false, "25%"), 1);
        assert_eq!(resolve(None, 4, true, "25%"), 1);
    }

    #[test]
    fn template_comparison_ignores_the_hash_label() {
        let t = json!({"metadata": {"labels": {"app": "x", POD_TEMPLATE_HASH: "abc"}}});
        assert_eq!(
            without_hash(&t),
            json!({"metadata": {"labels": {"app": "x"}}})
        );
    }
}
