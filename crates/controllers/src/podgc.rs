//! Housekeeping of what nobody else deletes: events older than the event TTL (upstream keeps
//! them for one hour through etcd leases), and pods bound to nodes that no longer exist
//! (upstream's pod garbage collector), plus terminated pods beyond a threshold.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};

/// Settings of the housekeeping controllers.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long events are kept (upstream: 1 hour).
    pub event_ttl: Duration,
    /// Terminated pods kept cluster-wide before the oldest are deleted (upstream: 12,500);
    /// 0 turns this collection off, as upstream's `--terminated-pod-gc-threshold`.
    pub terminated_pod_threshold: usize,
    /// How often to look.
    pub period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            event_ttl: Duration::from_secs(3600),
            terminated_pod_threshold: 12_500,
            period: Duration::from_secs(5),
        }
    }
}

/// How long a pod must stay orphaned before it is deleted (upstream's quarantine), so that
/// a node that is re-registering does not lose its pods.
const ORPHAN_QUARANTINE: Duration = Duration::from_secs(40);

/// Runs until the process ends.
pub async fn run(client: Client, options: Options) {
    let mut orphans: HashMap<String, Instant> = HashMap::new();
    loop {
        if let Err(e) = expire_events(&client, options.event_ttl).await {
            tracing::debug!("event TTL: {e}");
        }
        if let Err(e) = collect_pods(&client, options.terminated_pod_threshold, &mut orphans).await
        {
            tracing::debug!("pod GC: {e}");
        }
        tokio::time::sleep(options.period).await;
    }
}

/// The time an event was last seen: lastTimestamp, else eventTime, else creation.
fn last_seen(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether an event last seen at `seen` has outlived `ttl` at `now`.
pub fn expired(seen: Option<jiff::Timestamp>, ttl: Duration, now: jiff::Timestamp) -> bool {
    seen.is_some_and(|t| now.duration_since(t).as_secs_f64() > ttl.as_secs_f64())
}

async fn expire_events(client: &Client, ttl: Duration) -> Result<(), kube::Error> {
    let api: Api<Event> = Api::all(client.clone());
    let now = jiff::Timestamp::now();
    for e in api.list(&ListParams::default()).await?.items {
        if expired(last_seen(&e), ttl, now) {
            let ns: Api<Event> =
                Api::namespaced(client.clone(), &e.namespace().unwrap_or_default());
            delete_ignoring_missing(ns.delete(&e.name_any(), &DeleteParams::default()).await)?;
        }
    }
    Ok(())
}

fn delete_ignoring_missing<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn collect_pods(
    client: &Client,
    threshold: usize,
    orphans: &mut HashMap<String, Instant>,
) -> Result<(), kube::Error> {
    let nodes: HashSet<String> = Api::<Node>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|n| n.name_any())
        .collect();
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut terminated: Vec<&Pod> = Vec::new();
    let mut still_orphaned = HashMap::new();
    for p in &pods {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
        if !node.is_empty() && !nodes.contains(&node) {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let since = orphans.get(&uid).copied().unwrap_or_else(Instant::now);
            if since.elapsed() >= ORPHAN_QUARANTINE {
                // As upstream: the pod is marked Failed with a DisruptionTarget condition
                // (so that Job pod failure policies can tell), then deleted without a grace
                // period, since no kubelet will ever finish it.
                let patch = orphan_status(p, &jiff::Timestamp::now().to_string());
                if let Some(patch) = patch {
                    let (pp, patch) = (PatchParams::default(), Patch::Merge(&patch));
                    delete_ignoring_missing(api.patch_status(&p.name_any(), &pp, &patch).await)?;
                }
                let dp = DeleteParams::default().grace_period(0);
                delete_ignoring_missing(api.delete(&p.name_any(), &dp).await)?;
            } else {
                still_orphaned.insert(uid, since);
            }
            continue;
        }
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        if node.is_empty() && p.metadata.deletion_timestamp.is_some() {
            // Terminating and never scheduled: no kubelet will finish it (upstream's
            // gcUnscheduledTerminating).
            let dp = DeleteParams::default().grace_period(0);
            delete_ignoring_missing(api.delete(&p.name_any(), &dp).await)?;
            continue;
        }
        if matches!(phase, Some("Succeeded" | "Failed")) {
            terminated.push(p);
        }
    }
    *orphans = still_orphaned;
    if threshold > 0 && terminated.len() > threshold {
        terminated.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        for p in terminated.iter().take(terminated.len() - threshold) {
            let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
            delete_ignoring_missing(api.delete(&p.name_any(), &DeleteParams::default()).await)?;
        }
    }
    Ok(())
}

/// The status merge patch marking an orphaned pod: phase Failed unless it already finished,
/// and a `DisruptionTarget` condition with reason `DeletionByPodGC`. None when it has both.
pub fn orphan_status(p: &Pod, now: &str) -> Option<serde_json::Value> {
    let status = p.status.clone().unwrap_or_default();
    let finished = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
    let mut conditions: Vec<serde_json::Value> = status
        .conditions
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let marked = conditions
        .iter()
        .any(|c| c["type"] == "DisruptionTarget" && c["status"] == "True");
    if finished && marked {
        return None;
    }
    conditions.retain(|c| c["type"] != "DisruptionTarget");
    conditions.push(
        serde_json::json!({"type": "DisruptionTarget", "status": "True",
        "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists",
        "lastTransitionTime": now}),
    );
    let mut patch = serde_json::json!({"status": {"conditions": conditions}});
    if !finished {
        patch["status"]["phase"] = "Failed".into();
    }
    Some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_expire_after_the_ttl() {
        let now = jiff::Timestamp::from_second(10_000).unwrap();
        let old = jiff::Timestamp::from_second(10_000 - 3601).unwrap();
        let fresh = jiff::Timestamp::from_second(10_000 - 10).unwrap();
        let hour = Duration::from_secs(3600);
        assert!(expired(Some(old), hour, now));
        assert!(!expired(Some(fresh), hour, now));
        assert!(!expired(None, hour, now));
    }

    #[test]
    fn orphans_are_marked_failed_with_a_disruption_target() {
        let running: Pod = serde_json::from_value(serde_json::json!({
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap();
        let patch = orphan_status(&running, "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(patch["status"]["phase"], "Failed");
        let conds = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[1]["type"], "DisruptionTarget");
        assert_eq!(conds[1]["reason"], "DeletionByPodGC");
        let done: Pod = serde_json::from_value(serde_json::json!({
            "status": {"phase": "Succeeded", "conditions": [
                {"type": "DisruptionTarget", "status": "True"}]}}))
        .unwrap();
        assert_eq!(orphan_status(&done, "t"), None);
    }
}
