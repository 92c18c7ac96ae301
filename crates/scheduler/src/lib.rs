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
pub mod plugins;
pub mod quantity;
pub mod queue;
pub mod schedule_one;
#[cfg(test)]
mod testing;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::cache::Cache;
use crate::framework::{Framework, PodInfo, pod_key};
use crate::queue::SchedulingQueue;

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
}

/// Runs the scheduler until the process ends.
pub async fn run(client: Client) {
    let s = Arc::new(Scheduler {
        client,
        framework: plugins::default_framework(),
        cache: Mutex::new(Cache::new()),
        queue: SchedulingQueue::new(),
        bindings: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_BINDINGS)),
        nodes_synced: AtomicBool::new(false),
        pods_synced: AtomicBool::new(false),
    });
    tokio::join!(
        s.clone().watch_nodes(),
        s.clone().watch_pods(),
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

impl Scheduler {
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
            // An assumed pod's stale update must not queue it again.
            if !self.cache.lock().unwrap().has_pod(&key) {
                self.queue.add_or_update(Arc::new(pod), now);
            }
        } else {
            self.queue.delete(&key);
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
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
                watcher::Event::InitApply(p) => {
                    seen.insert(pod_key(&p));
                    self.on_pod(p, now);
                }
                watcher::Event::Apply(p) => self.on_pod(p, now),
                watcher::Event::Delete(p) => {
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
                let r = schedule_one::schedule_pod(&self.framework, &mut c, &info);
                if let Ok(node) = &r {
                    c.assume(info.clone(), node);
                }
                r
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
                Err(fit) => {
                    self.queue.add_unschedulable(&key, Instant::now());
                    let s = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = s.record_failure(&info.pod, &fit.to_string()).await {
                            tracing::info!("scheduler: {e}");
                        }
                    });
                }
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
            Ok(_) => Ok(()),
            // Gone: nothing left to schedule.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "binding",
                pod: pod_key(pod),
                source,
            }),
        }
    }

    /// The `FailedScheduling` event and the `PodScheduled=False` condition.
    async fn record_failure(&self, pod: &Pod, message: &str) -> Result<(), Error> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let now = jiff::Timestamp::now();
        let ts = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                               "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version},
            "reason": "FailedScheduling",
            "message": message,
            "type": "Warning",
            "action": "Scheduling",
            "source": {"component": DEFAULT_SCHEDULER_NAME},
            "reportingComponent": DEFAULT_SCHEDULER_NAME,
            "reportingInstance": DEFAULT_SCHEDULER_NAME,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }))
        .expect("a valid Event");
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let key = pod_key(pod);
        events
            .create(&PostParams::default(), &event)
            .await
            .map_err(|source| Error::Api {
                what: "recording an event for",
                pod: key.clone(),
                source,
            })?;
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
        if current.is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(message)
        }) {
            return Ok(());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": null, "lastTransitionTime": ts}]}});
        match pods
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "updating the status of",
                pod: key,
                source,
            }),
        }
    }
}
