//! The disruption controller: keeps each PodDisruptionBudget's status current, so that the
//! eviction subresource knows how many pods may go (`disruptionsAllowed`).
//!
//! `expectedPods` is the number of pods the budget selects; `desiredHealthy` comes from
//! `minAvailable` or from `maxUnavailable` (integers or percentages of the expected pods);
//! `currentHealthy` counts ready pods not already being evicted (`disruptedPods` entries
//! expire after two minutes, as upstream's).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use rkube_apimachinery::labels::Selector;
use serde_json::json;

use crate::pods::{is_active, is_ready};

/// How long an eviction's entry in `disruptedPods` holds a pod out of the healthy count.
const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

struct Ctx {
    client: Client,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let budgets: Api<PodDisruptionBudget> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let reader = Controller::new(budgets, watcher::Config::default());
    let store = reader.store();
    reader
        // Any pod change may change a budget of its namespace.
        .watches(pods, watcher::Config::default(), move |pod| {
            let ns = pod.namespace().unwrap_or_default();
            store
                .state()
                .into_iter()
                .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(_b: Arc<PodDisruptionBudget>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("disruption controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

/// An integer, or a percentage of `of` (rounded up, as upstream does for budgets).
fn scaled(v: &IntOrString, of: i32) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            (pct * of as f64 / 100.0).ceil() as i32
        }
    }
}

/// (expected, desiredHealthy) for a budget selecting `expected` pods.
pub fn desired_healthy(
    min_available: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    expected: i32,
) -> i32 {
    match (min_available, max_unavailable) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => expected,
    }
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|s| Selector::from_label_selector(&s).ok())
        .unwrap_or_else(Selector::nothing);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Pod> = if selector.is_empty() || selector.is_nothing() {
        Vec::new()
    } else {
        pods_api
            .list(&ListParams::default().labels(&selector.to_string()))
            .await?
            .items
            .into_iter()
            .filter(is_active)
            .collect()
    };
    let now = jiff::Timestamp::now();
    let previous = pdb.status.clone().unwrap_or_default();
    // Evictions not yet seen through: still counted out of the healthy pods for a while.
    let disrupted: std::collections::BTreeMap<String, _> = previous
        .disrupted_pods
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, t)| {
            now.duration_since(t.0).as_secs() < DISRUPTION_TIMEOUT.as_secs() as i64
                && pods
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        })
        .collect();
    let expected = pods.len() as i32;
    let healthy = pods
        .iter()
        .filter(|p| is_ready(p) && !disrupted.contains_key(&p.name_any()))
        .count() as i32;
    let desired = desired_healthy(
        spec.min_available.as_ref(),
        spec.max_unavailable.as_ref(),
        expected,
    );
    let allowed = (healthy - desired).max(0);
    let (status, reason, message) = if allowed > 0 {
        ("True", "SufficientPods", "")
    } else {
        ("False", "InsufficientPods", "")
    };
    let keep_time = previous
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
        .map(|c| c.last_transition_time.clone());
    let transition = keep_time.unwrap_or(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    // A merge patch removes map entries only when told to with null.
    let mut disrupted_patch = serde_json::to_value(&disrupted).unwrap_or(json!({}));
    for name in previous.disrupted_pods.iter().flatten().map(|(k, _)| k) {
        if !disrupted.contains_key(name) {
            disrupted_patch[name] = serde_json::Value::Null;
        }
    }
    let new_status = json!({
        "observedGeneration": pdb.metadata.generation,
        "disruptedPods": disrupted_patch,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": pdb.metadata.generation,
            "lastTransitionTime": transition,
        }],
    });
    let unchanged = previous.observed_generation == pdb.metadata.generation
        && previous.disruptions_allowed == allowed
        && previous.current_healthy == healthy
        && previous.desired_healthy == desired
        && previous.expected_pods == expected
        && previous.disrupted_pods.clone().unwrap_or_default().len() == disrupted.len()
        && previous
            .conditions
            .iter()
            .flatten()
            .any(|c| c.status == status);
    if !unchanged {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &pdb.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": new_status})),
        )
        .await?;
    }
    // Disrupted entries expire on their own: look again then.
    Ok(if disrupted.is_empty() {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(10))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_healthy_follows_upstream() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(desired_healthy(Some(&int(2)), None, 3), 2);
        assert_eq!(desired_healthy(Some(&pct("50%")), None, 3), 2);
        assert_eq!(desired_healthy(None, Some(&int(1)), 3), 2);
        assert_eq!(desired_healthy(None, Some(&pct("50%")), 3), 1);
        assert_eq!(desired_healthy(None, None, 3), 3);
    }
}
