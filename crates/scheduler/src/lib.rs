//! rkube-scheduler: the kube-scheduler, an ordinary API client.
//!
//! Two watches (nodes, pods) feed a [`cache::Cache`] of nodes with the pods bound to them and
//! a [`queue::SchedulingQueue`] of pods waiting for a node (`spec.schedulerName` is
//! `default-scheduler` or unset, no `spec.nodeName`). One loop pops a pod, runs the
//! [`framework`]'s filter and score [`plugins`] over the cached nodes, assumes the pod onto the
//! chosen node and binds it through `pods/binding` in the background; an attempt makes no
//! other API call. A pod no node fits gets a `FailedScheduling` event and the condition
//! `PodScheduled=False` (reason `Unschedulable`), and waits in the queue for a cluster event.
//!
//! It knows nothing about the apiserver's internals, and never talks to a node.

pub mod cache;
pub mod framework;
pub mod lean;
pub mod plugins;
pub mod queue;
pub mod schedule_one;
#[cfg(test)]
mod testing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rkube_events::Recorder;
use serde_json::json;

use crate::cache::Cache;
use crate::framework::{Framework, PodInfo, pod_key};
use crate::lean::LeanPod;
use crate::plugins::default_preemption::{self, Candidate};
use crate::queue::SchedulingQueue;
use crate::schedule_one::FitError;

/// The scheduler name pods ask for by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once.
const MAX_CONCURRENT_BINDINGS: usize = 64;

/// Errors of the scheduler's API calls.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what} {pod}: {source}")]
    Api {
        /// What was attempted.
        what: &'static str,
        /// `namespace/name`.
        pod: String,
        /// The failure.
        source: kube::Error,
    },
}

/// The running scheduler's state.
pub struct Scheduler {
    client: Client,
    framework: Framework,
    cache: Mutex<Cache>,
    queue: SchedulingQueue,
    bindings: Arc<tokio::sync::Semaphore>,
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
    /// PodDisruptionBudgets by `namespace/name`.
    pdbs: Mutex<HashMap<String, Arc<PodDisruptionBudget>>>,
    /// Scheduled, FailedScheduling and Preempted events, as `default-scheduler`.
    events: Recorder,
}

/// Runs the scheduler until the process ends.
pub async fn run(client: Client) {
    let s = Arc::new(Scheduler {
        events: Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME),
        client,
        framework: plugins::default_framework(),
        cache: Mutex::new(Cache::new()),
        queue: SchedulingQueue::new(),
        bindings: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_BINDINGS)),
        nodes_synced: AtomicBool::new(false),
        pods_synced: AtomicBool::new(false),
        pdbs: Mutex::new(HashMap::new()),
    });
    tokio::join!(
        s.clone().watch_nodes(),
        s.clone().watch_pods(),
        s.clone().watch_pdbs(),
        s.clone().watch_namespaces(),
        s.clone().schedule_loop(),
        s.clone().flush_loop(),
    );
}

/// Whether this scheduler should place the pod.
fn responsible(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let name = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or("");
    (name.is_empty() || name == DEFAULT_SCHEDULER_NAME)
        && spec
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// Follows every object of a kind, calling `f` for each event (errors are retried).
async fn watch_all<K>(client: Client, mut f: impl FnMut(watcher::Event<K>))
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    let mut stream = watcher(Api::<K>::all(client), watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => f(ev),
            Err(e) => {
                tracing::debug!("scheduler: watch: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The key of a namespaced object.
fn object_key(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or("")
    )
}

impl Scheduler {
    async fn watch_pdbs(self: Arc<Self>) {
        let api: Api<PodDisruptionBudget> = Api::all(self.client.clone());
        let mut seen: HashSet<String> = HashSet::new();
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let mut pdbs = self.pdbs.lock().unwrap();
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                    let key = object_key(&p.metadata);
                    seen.insert(key.clone());
                    pdbs.insert(key, Arc::new(p));
                }
                watcher::Event::Delete(p) => {
                    pdbs.remove(&object_key(&p.metadata));
                }
                watcher::Event::InitDone => pdbs.retain(|k, _| seen.contains(k)),
            }
        }
    }

    async fn watch_namespaces(self: Arc<Self>) {
        let mut seen: HashSet<String> = HashSet::new();
        let s = self.clone();
        watch_all::<Namespace>(self.client.clone(), move |ev| {
            let mut c = s.cache.lock().unwrap();
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(n) | watcher::Event::Apply(n) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    c.upsert_namespace(&name, n.metadata.labels.unwrap_or_default());
                    seen.insert(name);
                }
                watcher::Event::Delete(n) => {
                    c.remove_namespace(n.metadata.name.as_deref().unwrap_or(""))
                }
                watcher::Event::InitDone => {
                    let gone: Vec<String> = c
                        .namespaces
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    gone.iter().for_each(|n| c.remove_namespace(n));
                }
            }
        })
        .await;
    }

    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut seen: HashSet<String> = HashSet::new();
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!("scheduler: node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let now = Instant::now();
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(n) | watcher::Event::Apply(n) => {
                    seen.insert(n.metadata.name.clone().unwrap_or_default());
                    let moved = self.cache.lock().unwrap().upsert_node(Arc::new(n));
                    if moved {
                        self.queue.move_all_to_active_or_backoff(now);
                    }
                }
                watcher::Event::Delete(n) => {
                    let name = n.metadata.name.clone().unwrap_or_default();
                    self.cache.lock().unwrap().remove_node(&name);
                }
                watcher::Event::InitDone => {
                    let mut c = self.cache.lock().unwrap();
                    for name in c.node_names() {
                        if !seen.contains(&name) {
                            c.remove_node(&name);
                        }
                    }
                    drop(c);
                    self.nodes_synced.store(true, Ordering::Release);
                    self.queue.move_all_to_active_or_backoff(now);
                }
            }
        }
    }

    fn on_pod(&self, pod: Pod, now: Instant) {
        let key = pod_key(&pod);
        if terminal(&pod) {
            // Finished pods free their node's resources.
            self.queue.delete(&key);
            if self.cache.lock().unwrap().remove_pod(&key) {
                self.queue.move_all_to_active_or_backoff(now);
            }
        } else if assigned(&pod) {
            self.queue.delete(&key);
            self.cache.lock().unwrap().add_or_update_pod(Arc::new(pod));
        } else if responsible(&pod) {
            let mut c = self.cache.lock().unwrap();
            // An assumed pod's stale update must not queue it again.
            if !c.has_pod(&key) {
                let pod = Arc::new(pod);
                // A nomination made by another scheduler instance (or before a restart).
                let nominated = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref());
                if let Some(node) = nominated.filter(|n| !n.is_empty())
                    && c.nominated_node(&key) != Some(node)
                {
                    c.nominate(Arc::new(PodInfo::new(pod.clone())), node);
                }
                drop(c);
                self.queue.add_or_update(pod, now);
            }
        } else {
            self.queue.delete(&key);
            self.cache.lock().unwrap().clear_nomination(&key);
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let api: Api<LeanPod> = Api::all(self.client.clone());
        let mut seen: HashSet<String> = HashSet::new();
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!("scheduler: pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let now = Instant::now();
            match ev {
                watcher::Event::Init => seen.clear(),
                watcher::Event::InitApply(LeanPod(p)) => {
                    seen.insert(pod_key(&p));
                    self.on_pod(p, now);
                }
                watcher::Event::Apply(LeanPod(p)) => self.on_pod(p, now),
                watcher::Event::Delete(LeanPod(p)) => {
                    let key = pod_key(&p);
                    self.queue.delete(&key);
                    if self.cache.lock().unwrap().remove_pod(&key) {
                        self.queue.move_all_to_active_or_backoff(now);
                    }
                }
                watcher::Event::InitDone => {
                    let mut c = self.cache.lock().unwrap();
                    let mut removed = false;
                    for key in c.bound_pod_keys() {
                        if !seen.contains(&key) {
                            removed |= c.remove_pod(&key);
                        }
                    }
                    drop(c);
                    if removed {
                        self.queue.move_all_to_active_or_backoff(now);
                    }
                    self.pods_synced.store(true, Ordering::Release);
                }
            }
        }
    }

    async fn flush_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            self.queue.flush_unschedulable_left_over(Instant::now());
        }
    }

    async fn schedule_loop(self: Arc<Self>) {
        while !(self.nodes_synced.load(Ordering::Acquire)
            && self.pods_synced.load(Ordering::Acquire))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        loop {
            let qp = self.queue.pop().await;
            let info = Arc::new(PodInfo::new(qp.pod.clone()));
            let key = info.key.clone();
            let result = {
                let mut c = self.cache.lock().unwrap();
                match schedule_one::schedule_pod(&self.framework, &mut c, &info) {
                    Ok(node) => {
                        c.assume(info.clone(), &node);
                        Ok(node)
                    }
                    Err(mut fit) => {
                        let preemption = self.post_filter(&mut c, &info, &mut fit);
                        Err((fit, preemption))
                    }
                }
            };
            match result {
                Ok(node) => {
                    let permit = self.bindings.clone().acquire_owned().await.unwrap();
                    let s = self.clone();
                    tokio::spawn(async move {
                        let r = s.bind(&info.pod, &node).await;
                        drop(permit);
                        match r {
                            Ok(()) => s.queue.done(&key),
                            Err(e) => {
                                tracing::info!("scheduler: {e}");
                                s.cache.lock().unwrap().forget(&key);
                                s.queue.add_backoff(&key, Instant::now());
                            }
                        }
                    });
                }
                Err((fit, preemption)) => {
                    self.queue.add_unschedulable(&key, Instant::now());
                    let s = self.clone();
                    tokio::spawn(async move {
                        let mut nominated = None;
                        if let Some((cand, demoted)) = preemption {
                            nominated = Some(cand.node.clone());
                            s.prepare_candidate(&info.pod, cand, demoted).await;
                        }
                        let msg = fit.to_string();
                        if let Err(e) = s.record_failure(&info.pod, &msg, nominated).await {
                            tracing::info!("scheduler: {e}");
                        }
                    });
                }
            }
        }
    }

    /// Upstream's PostFilter step: preemption for a pod no node fits. On success the pod is
    /// nominated in the cache and the candidate is returned with the lower-priority pods that
    /// lose their nomination to the same node.
    fn post_filter(
        &self,
        c: &mut Cache,
        pod: &Arc<PodInfo>,
        fit: &mut FitError,
    ) -> Option<(Candidate, Vec<Arc<Pod>>)> {
        if fit.num_all_nodes == 0 || fit.pre_filter.is_some() {
            return None;
        }
        if let Err(msg) = default_preemption::eligible(pod, c, fit) {
            fit.post_filter_msg = Some(msg.to_string());
            return None;
        }
        let state = schedule_one::pre_filtered_state(&self.framework, c, pod)?;
        let pdbs: Vec<Arc<PodDisruptionBudget>> =
            self.pdbs.lock().unwrap().values().cloned().collect();
        let cand = default_preemption::find_candidate(&self.framework, c, &state, pod, fit, &pdbs)?;
        let demoted: Vec<Arc<PodInfo>> = c
            .node(&cand.node)
            .map(|n| {
                n.nominated
                    .iter()
                    .filter(|p| p.priority < pod.priority && p.key != pod.key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for p in &demoted {
            c.clear_nomination(&p.key);
        }
        c.nominate(pod.clone(), &cand.node);
        fit.post_filter_msg = Some(String::new());
        Some((cand, demoted.iter().map(|p| p.pod.clone()).collect()))
    }

    /// Evicts the candidate's victims (upstream's `prepareCandidate`): a `DisruptionTarget`
    /// condition, the deletion, and a `Preempted` event on each; lower-priority pods
    /// nominated to the node lose their nomination.
    async fn prepare_candidate(&self, preemptor: &Pod, cand: Candidate, demoted: Vec<Arc<Pod>>) {
        let node = cand.node.as_str();
        let uid = preemptor.metadata.uid.as_deref().unwrap_or("");
        let scheduler = preemptor
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        let evictions = cand.victims.iter().map(|v| async move {
            let victim = &v.pod;
            let r = async {
                self.patch_status(
                    victim,
                    json!({"status": {"conditions": [{
                        "type": "DisruptionTarget", "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                        "lastTransitionTime": now_rfc3339()}]}}),
                )
                .await?;
                self.delete(victim).await?;
                self.record_event(
                    victim,
                    "Preempted",
                    &format!("Preempted by pod {uid} on node {node}"),
                    "Normal",
                    "Preempting",
                );
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = r {
                tracing::info!("scheduler: preempting {}: {e}", v.key);
            }
        });
        futures::future::join_all(evictions).await;
        for p in demoted {
            if let Err(e) = self
                .patch_status(&p, json!({"status": {"nominatedNodeName": null}}))
                .await
            {
                tracing::info!("scheduler: {e}");
            }
        }
    }

    /// `POST pods/NAME/binding`.
    async fn bind(&self, pod: &Pod, node: &str) -> Result<(), Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                // Upstream's `Scheduled` event, queued for the recorder's writer.
                let message = format!("Successfully assigned {ns}/{name} to {node}");
                self.record_event(pod, "Scheduled", &message, "Normal", "Binding");
                Ok(())
            }
            // Gone: nothing left to schedule.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "binding",
                pod: pod_key(pod),
                source,
            }),
        }
    }

    /// Patches a pod's status (strategic merge); a pod gone meanwhile is fine.
    async fn patch_status(&self, pod: &Pod, patch: serde_json::Value) -> Result<(), Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match pods
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "updating the status of",
                pod: pod_key(pod),
                source,
            }),
        }
    }

    /// Deletes a pod (with its default grace period); a pod gone meanwhile is fine.
    async fn delete(&self, pod: &Pod) -> Result<(), Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "deleting",
                pod: pod_key(pod),
                source,
            }),
        }
    }

    /// Records an event about `pod` (queued: never waits for the API).
    fn record_event(&self, pod: &Pod, reason: &str, message: &str, type_: &str, action: &str) {
        let object = rkube_events::reference(pod);
        let mut event = self
            .events
            .event(&object, type_, reason, message, jiff::Timestamp::now());
        event.action = Some(action.into());
        self.events.emit(event);
    }

    /// The `FailedScheduling` event and the `PodScheduled=False` condition (with the node a
    /// preemption nominated).
    async fn record_failure(
        &self,
        pod: &Pod,
        message: &str,
        nominated: Option<String>,
    ) -> Result<(), Error> {
        self.record_event(pod, "FailedScheduling", message, "Warning", "Scheduling");
        let status = pod.status.as_ref();
        let current = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        let unchanged = current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        });
        let current_nomination = status.and_then(|s| s.nominated_node_name.clone());
        if unchanged && (nominated.is_none() || nominated == current_nomination) {
            return Ok(());
        }
        let mut patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}]}});
        if let Some(node) = nominated {
            patch["status"]["nominatedNodeName"] = json!(node);
        }
        self.patch_status(pod, patch).await
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
