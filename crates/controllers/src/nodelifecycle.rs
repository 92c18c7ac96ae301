//! The node lifecycle controller and its NoExecute taint manager.
//!
//! - A node whose Lease in `kube-node-lease` has not been renewed for the grace period gets
//!   its conditions set to `Unknown` ("Kubelet stopped posting node status.") and the
//!   `node.kubernetes.io/unreachable` taint with effects NoSchedule and NoExecute; the taints
//!   go again when the lease is renewed.
//! - Pods on a node with NoExecute taints they do not tolerate are deleted at once; pods that
//!   tolerate them for `tolerationSeconds` are deleted when that time has passed since the
//!   taint was added (`timeAdded`). Pods without their own toleration get 300 s from the
//!   apiserver's DefaultTolerationSeconds admission.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::Recorder;

/// The taint of a node whose kubelet stopped reporting.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a lease may go unrenewed before the node is Unknown (upstream: 40 s).
    pub grace_period: Duration,
    /// How often nodes and pods are checked.
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            grace_period: Duration::from_secs(40),
            period: Duration::from_secs(2),
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: Client, options: Options) {
    let recorder = Recorder::new(client.clone(), "node-controller");
    loop {
        if let Err(e) = sync(&client, &recorder, &options).await {
            tracing::debug!("node lifecycle controller: {e}");
        }
        tokio::time::sleep(options.period).await;
    }
}

async fn sync(client: &Client, recorder: &Recorder, options: &Options) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewed: BTreeMap<String, jiff::Timestamp> = leases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|l| {
            let t = l.spec.as_ref()?.renew_time.as_ref()?.0;
            Some((l.name_any(), t))
        })
        .collect();
    let now = jiff::Timestamp::now();
    let mut tainted: Vec<Node> = Vec::new();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        // A node without a lease yet is judged from its creation.
        let last = renewed.get(&name).copied().unwrap_or(created);
        let stale = now.duration_since(last).as_secs() as u64 > options.grace_period.as_secs();
        let has_taint = taints(&node).iter().any(|t| t.key == UNREACHABLE);
        if stale && !has_taint {
            mark_unreachable(&nodes, &node, now).await?;
            recorder
                .record(
                    &node_ref(&node),
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        } else if !stale && has_taint {
            let kept: Vec<Taint> = taints(&node)
                .into_iter()
                .filter(|t| t.key != UNREACHABLE)
                .collect();
            let patch = json!({"spec": {"taints": kept}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        let refreshed = if stale && !has_taint {
            nodes.get(&name).await?
        } else {
            node
        };
        if taints(&refreshed).iter().any(|t| t.effect == "NoExecute") {
            tainted.push(refreshed);
        }
    }
    for node in tainted {
        evict_intolerant(client, recorder, &node, now).await?;
    }
    Ok(())
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn node_ref(node: &Node) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        namespace: Some("default".into()),
        ..Default::default()
    }
}

async fn mark_unreachable(
    api: &Api<Node>,
    node: &Node,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let name = node.name_any();
    let mut list = taints(node);
    for effect in ["NoSchedule", "NoExecute"] {
        list.push(Taint {
            key: UNREACHABLE.into(),
            effect: effect.into(),
            time_added: (effect == "NoExecute").then_some(Time(now)),
            value: None,
        });
    }
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"taints": list}})),
    )
    .await?;
    let conditions: Vec<serde_json::Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "type": c.type_,
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": c.last_heartbeat_time,
                "lastTransitionTime": Time(now),
            })
        })
        .collect();
    if !conditions.is_empty() {
        // Conditions merge by type in a strategic merge patch.
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
    }
    Ok(())
}

/// Whether `t` tolerates the taint, as upstream matches them.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    let key_ok = match op {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    };
    effect_ok && key_ok
}

/// When a pod must leave a node with these NoExecute taints: None if never, else how long
/// after `now` (zero: at once).
pub fn eviction_delay(
    tolerations: &[Toleration],
    taints: &[Taint],
    now: jiff::Timestamp,
) -> Option<Duration> {
    let mut delay: Option<Duration> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let Some(t) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(Duration::ZERO);
        };
        if let Some(secs) = t.toleration_seconds {
            let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            let deadline = added + jiff::SignedDuration::from_secs(secs.max(0));
            let left = deadline.duration_since(now);
            let left = Duration::from_secs_f64(left.as_secs_f64().max(0.0));
            delay = Some(delay.map_or(left, |d| d.min(left)));
        }
    }
    delay
}

async fn evict_intolerant(
    client: &Client,
    recorder: &Recorder,
    node: &Node,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", node.name_any())))
        .await?;
    let taints = taints(node);
    for pod in on_node.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        if eviction_delay(&tolerations, &taints, now) != Some(Duration::ZERO) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                let pod_ref = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                };
                let msg = format!("Marking for deletion Pod {ns}/{}", pod.name_any());
                recorder
                    .record(&pod_ref, "Normal", "TaintManagerEviction", &msg)
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(
        key: &str,
        value: Option<&str>,
        effect: &str,
        added: Option<jiff::Timestamp>,
    ) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(String::from),
            effect: effect.into(),
            time_added: added.map(Time),
        }
    }

    fn toleration(key: &str, op: &str, effect: Option<&str>, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            effect: effect.map(String::from),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn eviction_timing() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap();
        let earlier = jiff::Timestamp::from_second(1_000_000 - 100).unwrap();
        let t = [taint(UNREACHABLE, None, "NoExecute", Some(earlier))];
        assert_eq!(eviction_delay(&[], &t, now), Some(Duration::ZERO));
        let tol = [toleration(
            UNREACHABLE,
            "Exists",
            Some("NoExecute"),
            Some(300),
        )];
        assert_eq!(
            eviction_delay(&tol, &t, now),
            Some(Duration::from_secs(200))
        );
        let forever = [toleration(UNREACHABLE, "Exists", None, None)];
        assert_eq!(eviction_delay(&forever, &t, now), None);
        let soft = [taint("key", Some("v"), "NoSchedule", None)];
        assert_eq!(eviction_delay(&[], &soft, now), None);
        let equal = toleration("key", "Equal", Some("NoExecute"), None);
        assert!(!tolerates(
            &equal,
            &taint("key", Some("v"), "NoExecute", None)
        ));
    }
}
