//! Pod workers: one task per pod UID that converges the runtime onto the pod spec (upstream's
//! `pod_workers.go` + `kuberuntime_manager.go`).

pub mod actions;
mod deps;
pub mod images;
pub mod sandbox;
pub mod state;
pub mod worker;

#[cfg(test)]
pub mod fake;
#[cfg(test)]
pub mod tests_support {
    //! Test helpers shared across modules.
    pub use super::tests::TempDir;
}

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use rkube_cri::{ImageService, RuntimeService};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::config::KubeletConfig;
use crate::events::Recorder;
use state::PodRuntime;

/// How pod workers write to the API: status patches and the final delete.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync {
    /// Patches `pods/<name>/status` (of the mirror pod, for static pods); `true` on success.
    async fn patch_status(&self, pod: &Pod, status: &serde_json::Value) -> bool;
    /// Deletes the pod with `gracePeriodSeconds=0` and a UID precondition.
    async fn delete_pod(&self, pod: &Pod);
}

/// [`PodApi`] over a `kube::Client`.
pub struct ClientPodApi(pub Client);

#[async_trait::async_trait]
impl PodApi for ClientPodApi {
    async fn patch_status(&self, pod: &Pod, status: &serde_json::Value) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.0.clone(), ns);
        let body = serde_json::json!({"status": status});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "pod status patch failed");
                false
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.0.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(name, &dp).await {
            tracing::debug!(pod = %name, error = %e, "final pod delete failed");
        }
    }
}

/// What the streaming server needs to find a pod's containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisteredPod {
    /// Pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The newest sandbox.
    pub sandbox_id: Option<String>,
    /// (container name, id, running), newest first.
    pub containers: Vec<(String, String, bool)>,
    /// The pod's log directory.
    pub log_dir: PathBuf,
    /// Container names in spec order (init containers first).
    pub spec_containers: Vec<String>,
}

/// The pods the workers run, by UID.
#[derive(Debug, Default)]
pub struct PodRegistry {
    inner: Mutex<HashMap<String, RegisteredPod>>,
}

impl PodRegistry {
    /// Records what a worker knows after a sync.
    pub fn update(&self, uid: &str, pod: &Pod, rt: &PodRuntime, logs_root: &Path) {
        let entry = RegisteredPod {
            uid: uid.to_string(),
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            sandbox_id: rt.sandbox().map(|s| s.id.clone()),
            containers: rt
                .containers
                .iter()
                .map(|c| (c.name.clone(), c.id.clone(), c.running()))
                .collect(),
            log_dir: sandbox::pod_log_dir(logs_root, pod),
            spec_containers: actions::init_containers(pod)
                .iter()
                .chain(actions::app_containers(pod))
                .map(|c| c.name.clone())
                .collect(),
        };
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.to_string(), entry);
    }

    /// Forgets a pod.
    pub fn remove(&self, uid: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
    }

    /// The pod named `namespace/name` (the newest if several UIDs share it).
    pub fn find(&self, namespace: &str, name: &str) -> Option<RegisteredPod> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.values()
            .filter(|p| p.namespace == namespace && p.name == name)
            .find(|p| p.sandbox_id.is_some())
            .or_else(|| {
                m.values()
                    .find(|p| p.namespace == namespace && p.name == name)
            })
            .cloned()
    }
}

/// What every pod worker shares.
pub struct Shared {
    /// The container runtime.
    pub runtime: Arc<dyn RuntimeService>,
    /// The image service.
    pub images: Arc<dyn ImageService>,
    /// The API client (`None` in unit tests: no volumes from the API, plain env only).
    pub client: Option<Client>,
    /// Status patches and final deletes.
    pub api: Arc<dyn PodApi>,
    /// Events.
    pub recorder: Recorder,
    /// Container restart and image pull back-off.
    pub backoff: Backoff,
    /// Configuration.
    pub cfg: Arc<KubeletConfig>,
    /// Pods for the streaming server.
    pub registry: PodRegistry,
    /// Volumes (needs the API client).
    pub volumes: Option<crate::volumes::VolumeManager>,
}

struct Handle {
    tx: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
    /// The pod left its source (its worker is cleaning up or done).
    removed: bool,
}

/// Dispatches pod updates to one worker per UID.
pub struct PodWorkers {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<String, Handle>>,
}

impl PodWorkers {
    /// Workers over `shared`.
    pub fn new(shared: Arc<Shared>) -> Arc<PodWorkers> {
        Arc::new(PodWorkers {
            shared,
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A new or changed pod from a source.
    pub fn update(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = workers.get(&uid) {
            if !h.task.is_finished() {
                h.tx.send_replace(Some(pod));
                return;
            }
            if !h.removed {
                // Terminated after deletion; the API still shows the pod until the final
                // delete lands. Never start it again.
                return;
            }
            workers.remove(&uid);
        }
        let (tx, rx) = watch::channel(Some(pod));
        let worker = worker::PodWorker::new(self.shared.clone(), uid.clone(), rx);
        let task = tokio::spawn(worker.run());
        workers.insert(
            uid,
            Handle {
                tx,
                task,
                removed: false,
            },
        );
    }

    /// A pod gone from its source: its worker kills and cleans up.
    pub fn remove(&self, uid: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let finished = match workers.get_mut(uid) {
            Some(h) if h.task.is_finished() => true,
            Some(h) => {
                h.tx.send_replace(None);
                h.removed = true;
                false
            }
            None => false,
        };
        if finished {
            workers.remove(uid);
        }
    }

    /// Stops every worker without touching its containers (the kubelet is stopping).
    pub fn detach_all(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, h) in workers.drain() {
            // Dropping the sender ends the worker's loop; aborting makes it immediate.
            h.task.abort();
        }
    }

    /// UIDs with a live worker.
    pub fn uids(&self) -> Vec<String> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers
            .iter()
            .filter(|(_, h)| !h.task.is_finished())
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Whether pod `uid` has a live worker.
    pub fn is_running(&self, uid: &str) -> bool {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.get(uid).is_some_and(|h| !h.task.is_finished())
    }

    /// Stops and removes sandboxes of pods no source knows (`known` = every desired UID).
    pub async fn cleanup_orphans(&self, known: &HashSet<String>) {
        let Ok(sandboxes) = self.shared.runtime.list_pod_sandbox().await else {
            return;
        };
        let orphans: HashSet<String> = sandboxes
            .into_iter()
            .map(|s| s.metadata.uid)
            .filter(|u| !known.contains(u) && !self.is_running(u))
            .collect();
        for uid in orphans {
            tracing::info!(uid = %uid, "removing the containers of a pod that no longer exists");
            worker::cleanup_orphan(&self.shared, &uid).await;
        }
    }
}

#[cfg(test)]
mod tests;
