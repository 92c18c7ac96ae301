//! The ReplicaSet controller, which also drives ReplicationControllers: keeps `replicas` pods
//! matching the selector, adopting orphans and releasing pods that stopped matching, and
//! reports counts and the `ReplicaFailure` condition (pods it could not create or delete) in
//! the status.
//!
//! Both kinds are handled through one [`Workload`] view of a `DynamicObject`, since they
//! differ only in how the selector is written. Pods are read with a LIST per reconcile: the
//! apiserver serves it from its watch cache after every acknowledged write, so a reconcile
//! never misses the pods it created a moment ago (the job upstream's "expectations" do).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use rkube_apimachinery::labels::Selector;
use serde_json::{Value, json};

use crate::events::Recorder;
use crate::pods::{self, is_active, is_available, is_ready};
use k8s_openapi::api::core::v1::ObjectReference;

/// Pods created or deleted per reconcile at most (upstream's `burstReplicas`).
const BURST: usize = 500;

pub use crate::Error;

/// A ReplicaSet or ReplicationController, read from JSON.
pub struct Workload {
    /// `apps/v1` or `v1`.
    pub api_version: String,
    /// `ReplicaSet` or `ReplicationController`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// Desired replicas.
    pub replicas: i64,
    /// Pod selector.
    pub selector: Selector,
    /// The pod template.
    pub template: Value,
    /// Seconds a pod must be ready to count as available.
    pub min_ready_seconds: i64,
    /// metadata.generation.
    pub generation: i64,
}

impl Workload {
    /// Reads the fields the controller needs.
    pub fn from_object(obj: &DynamicObject) -> Result<Workload, Error> {
        let data = &obj.data;
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let raw_selector = data
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null);
        let selector = if kind == "ReplicationController" {
            // A plain label map; defaulted from the template by the apiserver.
            let labels = raw_selector.as_object().cloned().unwrap_or_default();
            Selector::from_label_selector(&json!({"matchLabels": labels}))
        } else {
            Selector::from_label_selector(&raw_selector)
        }
        .map_err(|e| Error::Selector(e.0))?;
        if selector.is_empty() {
            return Err(Error::Selector("empty selector".into()));
        }
        Ok(Workload {
            api_version: obj
                .types
                .as_ref()
                .map(|t| t.api_version.clone())
                .unwrap_or_default(),
            kind,
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            replicas: data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            selector,
            template: data.pointer("/spec/template").cloned().unwrap_or(json!({})),
            min_ready_seconds: data
                .pointer("/spec/minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            generation: obj.metadata.generation.unwrap_or(0),
        })
    }

    /// A reference to this workload for its events.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    fn owner_reference(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
               "uid": self.uid, "controller": true, "blockOwnerDeletion": true})
    }

    /// A new pod from the template, owned by this workload.
    pub fn new_pod(&self) -> Value {
        let meta = self.template.get("metadata").cloned().unwrap_or(json!({}));
        let mut metadata = json!({
            "generateName": format!("{}-", self.name),
            "namespace": self.namespace,
            "ownerReferences": [self.owner_reference()],
        });
        for key in ["labels", "annotations", "finalizers"] {
            if let Some(v) = meta.get(key) {
                metadata[key] = v.clone();
            }
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": self.template.get("spec").cloned().unwrap_or(json!({})),
        })
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the ReplicaSet and ReplicationController controllers until the process ends.
pub async fn run(client: Client) {
    tokio::join!(
        run_kind(client.clone(), "apps", "v1", "ReplicaSet", "replicasets"),
        run_kind(
            client,
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers"
        ),
    );
}

async fn run_kind(client: Client, group: &str, version: &str, kind: &str, plural: &str) {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let pods: Api<Pod> = Api::all(client.clone());
    // Upstream's component names for the two controllers' events.
    let component = if kind == "ReplicaSet" {
        "replicaset-controller"
    } else {
        "replication-controller"
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), component),
        client,
    });
    Controller::new_with(api, watcher::Config::default(), ar)
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_obj: Arc<DynamicObject>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("replicaset controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if obj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let w = Workload::from_object(&obj)?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &w.namespace);
    let owned = claim_pods(&pods_api, &w).await?;
    let active: Vec<&Pod> = owned.iter().filter(|p| is_active(p)).collect();
    let diff = active.len() as i64 - w.replicas;
    let mut requeue = None;
    // A failure to create or delete pods is reported in the status (ReplicaFailure) before
    // it is returned, as upstream's syncReplicaSet does.
    let mut manage_err: Option<Error> = None;
    if diff < 0 {
        let want = (-diff as usize).min(BURST);
        manage_err = create_pods(&ctx, &pods_api, &w, want).await.err();
    } else if diff > 0 {
        let mut victims = active.clone();
        victims.sort_by_key(|p| pods::deletion_rank(p));
        let doomed: Vec<String> = victims
            .iter()
            .take((diff as usize).min(BURST))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let dp = DeleteParams::default();
        let deletes = doomed.iter().map(|name| pods_api.delete(name, &dp));
        for (r, name) in join_all(deletes).await.into_iter().zip(&doomed) {
            match r {
                Ok(_) => {
                    let msg = format!("Deleted pod: {name}");
                    ctx.recorder
                        .record(&w.object_ref(), "Normal", "SuccessfulDelete", &msg)
                        .await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    manage_err.get_or_insert(e.into());
                }
            }
        }
    }
    // Status, counted over the pods as they are now.
    let now = jiff::Timestamp::now();
    let template_labels = w.template.pointer("/metadata/labels").cloned();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .as_ref()
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .all(|(k, v)| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(k))
                        .map(String::as_str)
                        == v.as_str()
                })
        })
        .count();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| is_available(p, w.min_ready_seconds, now))
        .count();
    if ready > available {
        // Pods become available after minReadySeconds: look again then.
        requeue = Some(Duration::from_secs(w.min_ready_seconds.max(1) as u64));
    }
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": w.generation,
    });
    let failure = manage_err.as_ref().map(|e| {
        let reason = if diff < 0 {
            "FailedCreate"
        } else {
            "FailedDelete"
        };
        (reason, error_message(e))
    });
    let previous = obj.data.pointer("/status/conditions");
    let conditions = replica_failure_conditions(
        previous,
        failure.as_ref().map(|(r, m)| (*r, m.as_str())),
        &now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    if obj.data.get("status") != Some(&status) {
        let mut patch = status.clone();
        if status.get("conditions").is_none() && previous.is_some() {
            // A merge patch removes the field only when told so explicitly.
            patch["conditions"] = Value::Null;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            &w.namespace,
            &ApiResource::from_gvk_with_plural(
                &gvk_of(&w),
                if w.kind == "ReplicaSet" {
                    "replicasets"
                } else {
                    "replicationcontrollers"
                },
            ),
        );
        api.patch_status(
            &w.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": patch})),
        )
        .await?;
    }
    if let Some(e) = manage_err {
        return Err(e);
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The message of a failed API call as the apiserver wrote it (upstream's `err.Error()` of a
/// StatusError), e.g. `pods "web-" is forbidden: …`.
fn error_message(e: &Error) -> String {
    match e {
        Error::Api(kube::Error::Api(s)) => s.message.clone(),
        other => other.to_string(),
    }
}

/// `status.conditions` after a sync, by upstream's rule: a failed sync adds a
/// `ReplicaFailure` condition (status True, `reason`, the error's message) unless one is
/// there already; a successful sync removes it. Other conditions are kept as they are.
fn replica_failure_conditions(
    previous: Option<&Value>,
    failure: Option<(&str, &str)>,
    now: &str,
) -> Vec<Value> {
    let mut conditions: Vec<Value> = previous
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c["type"] == "ReplicaFailure");
    match failure {
        Some((reason, message)) if !has_failure => conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })),
        Some(_) => {}
        None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
    }
    conditions
}

fn gvk_of(w: &Workload) -> GroupVersionKind {
    let (group, version) = w
        .api_version
        .split_once('/')
        .unwrap_or(("", &w.api_version));
    GroupVersionKind::gvk(group, version, &w.kind)
}

/// The pods this workload controls after adopting matching orphans and releasing owned pods
/// that no longer match (upstream's ControllerRefManager).
async fn claim_pods(api: &Api<Pod>, w: &Workload) -> Result<Vec<Pod>, Error> {
    let list = api
        .list(&ListParams::default().labels(&w.selector.to_string()))
        .await?;
    let mut owned = Vec::new();
    for pod in list.items {
        let controller = pods::controller_of(&pod);
        let matches = w.selector.matches(|k| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(k))
                .map(String::as_str)
        });
        match controller {
            Some(uid) if uid == w.uid => {
                if matches {
                    owned.push(pod);
                } else {
                    pods::set_owner_references(api, &pod, None, &w.uid).await?;
                }
            }
            Some(_) => {}
            None if matches && pod.metadata.deletion_timestamp.is_none() => {
                let adopted =
                    pods::set_owner_references(api, &pod, Some(w.owner_reference()), &w.uid)
                        .await?;
                owned.extend(adopted);
            }
            None => {}
        }
    }
    Ok(owned)
}

/// Creates `count` pods in slow-start batches (1, 2, 4, …) so that a failing template fails
/// fast instead of `count` times.
async fn create_pods(ctx: &Ctx, api: &Api<Pod>, w: &Workload, count: usize) -> Result<(), Error> {
    let pod: Pod = serde_json::from_value(w.new_pod()).map_err(kube::Error::SerdeError)?;
    let mut done = 0;
    let mut batch = 1;
    while done < count {
        let n = batch.min(count - done);
        let pp = PostParams::default();
        let results = join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        for r in results {
            match r {
                Ok(p) => {
                    let msg = format!("Created pod: {}", p.metadata.name.unwrap_or_default());
                    ctx.recorder
                        .record(&w.object_ref(), "Normal", "SuccessfulCreate", &msg)
                        .await;
                }
                Err(e) => {
                    let e = Error::from(e);
                    let msg = format!("Error creating: {}", error_message(&e));
                    ctx.recorder
                        .record(&w.object_ref(), "Warning", "FailedCreate", &msg)
                        .await;
                    return Err(e);
                }
            }
        }
        done += n;
        batch *= 2;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_failure_is_set_once_and_cleared() {
        let t = "2026-01-01T00:00:00Z";
        let forbidden = "pods \"web-\" is forbidden: no PriorityClass with name x was found";
        let set = replica_failure_conditions(None, Some(("FailedCreate", forbidden)), t);
        assert_eq!(
            set,
            [
                json!({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": t,
                    "reason": "FailedCreate", "message": forbidden})
            ]
        );
        // A second failure keeps the first condition (and its time) as it is.
        let prev = Value::Array(set.clone());
        let again = replica_failure_conditions(
            Some(&prev),
            Some(("FailedCreate", "other")),
            "2026-01-02T00:00:00Z",
        );
        assert_eq!(again, set);
        // Success removes it, keeping other conditions.
        let mut with_other = set.clone();
        with_other.push(json!({"type": "Other", "status": "True"}));
        let cleared = replica_failure_conditions(Some(&Value::Array(with_other)), None, t);
        assert_eq!(cleared, [json!({"type": "Other", "status": "True"})]);
    }
}
