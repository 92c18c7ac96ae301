//! Simulated nodes, as kwok simulates them: `PREFIX-0 … PREFIX-(N-1)` register as Ready
//! nodes, renew their Leases in `kube-node-lease`, and play the kubelet's part for pods bound
//! to them without running anything: shortly after binding a pod turns Running and Ready (with
//! an IP from the node's range), run-to-completion pods succeed about a second later, and pods
//! being deleted are removed for real (the kubelet's final `gracePeriodSeconds=0` delete).
//!
//! One process carries thousands of nodes: one pod watch for all of them (filtered by the set
//! of node names, since a `spec.nodeName` field selector is per node), lease renewals spread
//! over the renewal period in small batches, and a bound on concurrent API writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

pub use crate::node::{LEASE_DURATION_SECONDS, NODE_LEASE_NAMESPACE};

/// How often a node's lease is renewed (upstream's default).
pub const LEASE_RENEW_INTERVAL: Duration = crate::node::HEARTBEAT_INTERVAL;
/// Delay between binding and Running.
const START_DELAY: Duration = Duration::from_millis(200);
/// How long a run-to-completion pod "runs".
const COMPLETE_AFTER: Duration = Duration::from_secs(1);
/// API writes in flight at once.
const MAX_CONCURRENT_WRITES: usize = 32;
/// Lease renewal is spread over this many slots per interval.
const LEASE_SLOTS: usize = 100;

/// What each simulated node reports as capacity and allocatable.
#[derive(Debug, Clone)]
pub struct NodeCapacity {
    /// CPU, e.g. `32`.
    pub cpu: String,
    /// Memory, e.g. `128Gi`.
    pub memory: String,
    /// Pods, e.g. `110`.
    pub pods: String,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity {
            cpu: "32".into(),
            memory: "128Gi".into(),
            pods: "110".into(),
        }
    }
}

/// Errors of the simulated nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what} {name}: {source}")]
    Api {
        /// What was attempted.
        what: &'static str,
        /// The object.
        name: String,
        /// The failure.
        source: kube::Error,
    },
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The pod range of node `i`: `10.42.i.0/24` for the first 256 nodes, then further /16s
/// (skipping 10.43, the default service range).
pub fn pod_subnet(i: usize) -> (u8, u8) {
    let mut second = 42 + i / 256;
    if second >= 43 {
        second += 1;
    }
    ((second.min(255)) as u8, (i % 256) as u8)
}

/// The InternalIP of node `i`: in 172.16.0.0/12.
pub fn node_ip(i: usize) -> String {
    let n = i + 1;
    format!("172.{}.{}.{}", 16 + n / 65536, (n / 256) % 256, n % 256)
}

/// The node object of simulated node `i`.
pub fn node_object(name: &str, i: usize) -> Value {
    let (a, b) = pod_subnet(i);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"podCIDR": format!("10.{a}.{b}.0/24"), "podCIDRs": [format!("10.{a}.{b}.0/24")]},
    })
}

/// The status of simulated node `i`.
pub fn node_status(name: &str, i: usize, capacity: &NodeCapacity) -> Value {
    let conditions = crate::node::node_conditions(
        crate::node::Pressure::default(),
        Ok(()),
        &[],
        jiff::Timestamp::now(),
    );
    let res = json!({"cpu": capacity.cpu, "memory": capacity.memory, "pods": capacity.pods,
                     "ephemeral-storage": "100Gi"});
    json!({"status": {
        "capacity": res,
        "allocatable": res,
        "phase": "Running",
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": node_ip(i)}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": format!("{i:032x}"), "systemUUID": format!("{i:032x}"), "bootID": format!("{i:032x}"),
            "kernelVersion": "simulated", "osImage": "rkube simulated node",
            "containerRuntimeVersion": "simulated://0.1.0",
            "kubeletVersion": crate::hostinfo::KUBELET_VERSION, "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": "amd64",
        },
    }})
}

struct Sim {
    client: Client,
    /// Node name → index.
    nodes: HashMap<String, usize>,
    /// Per-node count of pod IPs handed out.
    next_ip: Mutex<Vec<u32>>,
    writes: Semaphore,
    /// Pods (by uid) something is already being done for, and what.
    handled: Mutex<HashMap<String, Stage>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Starting,
    Completing,
    Deleting,
}

/// Registers `count` simulated nodes named `PREFIX-i` and runs them until the process ends.
pub async fn run_simulated(
    client: Client,
    prefix: &str,
    count: usize,
    capacity: NodeCapacity,
) -> Result<(), Error> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let sim = Arc::new(Sim {
        client: client.clone(),
        nodes: names.iter().cloned().zip(0..).collect(),
        next_ip: Mutex::new(vec![0; count]),
        writes: Semaphore::new(MAX_CONCURRENT_WRITES),
        handled: Mutex::new(HashMap::new()),
    });
    // The first node alone, so a wrong server or credential fails fast and clearly.
    if let Some(first) = names.first() {
        sim.register(first, 0, &capacity).await?;
    }
    let results: Vec<Result<(), Error>> = futures::stream::iter(names.iter().enumerate().skip(1))
        .map(|(i, n)| {
            let sim = sim.clone();
            let capacity = capacity.clone();
            async move { sim.register(n, i, &capacity).await }
        })
        .buffer_unordered(MAX_CONCURRENT_WRITES)
        .collect()
        .await;
    for r in results {
        r?;
    }
    tracing::info!("{count} simulated nodes registered");
    tokio::join!(sim.clone().renew_leases(names), sim.clone().watch_pods());
    Ok(())
}

impl Sim {
    async fn register(&self, name: &str, i: usize, capacity: &NodeCapacity) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let err = |what, source| Error::Api {
            what,
            name: name.to_string(),
            source,
        };
        let node: Node = serde_json::from_value(node_object(name, i)).expect("a Node");
        let uid = match api.create(&PostParams::default(), &node).await {
            Ok(n) => n.metadata.uid,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = json!({"metadata": {"labels": node.metadata.labels}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| err("updating node", e))?
                    .metadata
                    .uid
            }
            Err(e) => return Err(err("registering node", e)),
        };
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&node_status(name, i, capacity)),
        )
        .await
        .map_err(|e| err("updating the status of node", e))?;
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let lease = crate::node::lease_object(name, uid.as_deref(), jiff::Timestamp::now());
        match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(err("creating the lease of node", e)),
        }
    }

    /// Renews every lease once per interval, a slice of the nodes every tick.
    async fn renew_leases(self: Arc<Self>, names: Vec<String>) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let mut tick = tokio::time::interval(LEASE_RENEW_INTERVAL / LEASE_SLOTS as u32);
        let mut slot = 0usize;
        loop {
            tick.tick().await;
            let due: Vec<&String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| i % LEASE_SLOTS == slot)
                .map(|(_, n)| n)
                .collect();
            slot = (slot + 1) % LEASE_SLOTS;
            futures::stream::iter(due)
                .for_each_concurrent(MAX_CONCURRENT_WRITES / 2, |n| {
                    let leases = leases.clone();
                    async move {
                        let patch =
                            json!({"spec": {"renewTime": now_micro(), "holderIdentity": n}});
                        if let Err(e) = leases
                            .patch(n, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            tracing::debug!("renewing lease {n}: {e}");
                        }
                    }
                })
                .await;
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => self.on_pod(p),
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(uid) = &p.metadata.uid {
                        self.handled.lock().unwrap().remove(uid);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("simulated kubelet: pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn on_pod(self: &Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let Some(&index) = self.nodes.get(node) else {
            return;
        };
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let next = if pod.metadata.deletion_timestamp.is_some() {
            Stage::Deleting
        } else if phase == "Pending" {
            Stage::Starting
        } else if phase == "Running" && run_to_completion(&pod) {
            Stage::Completing
        } else {
            return;
        };
        {
            let mut h = self.handled.lock().unwrap();
            match h.get(&uid) {
                Some(s) if *s == next || (*s == Stage::Starting && next == Stage::Completing) => {
                    return;
                }
                _ => {}
            }
            h.insert(uid, next);
        }
        let sim = self.clone();
        tokio::spawn(async move {
            let r = match next {
                Stage::Deleting => sim.delete(&pod).await,
                Stage::Starting => {
                    tokio::time::sleep(START_DELAY).await;
                    let r = sim.start(&pod, index).await;
                    if r.is_ok() && run_to_completion(&pod) {
                        tokio::time::sleep(COMPLETE_AFTER).await;
                        sim.complete(&pod).await
                    } else {
                        r
                    }
                }
                Stage::Completing => {
                    tokio::time::sleep(COMPLETE_AFTER).await;
                    sim.complete(&pod).await
                }
            };
            if let Err(e) = r {
                tracing::info!("simulated kubelet: {e}");
                // Let a later event retry.
                if let Some(uid) = &pod.metadata.uid {
                    sim.handled.lock().unwrap().remove(uid);
                }
            }
        });
    }

    async fn patch_pod_status(&self, pod: &Pod, status: Value) -> Result<(), Error> {
        let _permit = self.writes.acquire().await.expect("semaphore open");
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "updating the status of pod",
                name: format!("{ns}/{name}"),
                source,
            }),
        }
    }

    fn pod_ip(&self, index: usize) -> String {
        let mut ips = self.next_ip.lock().unwrap();
        let n = ips[index];
        ips[index] = n.wrapping_add(1);
        let (a, b) = pod_subnet(index);
        format!("10.{a}.{b}.{}", 2 + n % 252)
    }

    async fn start(&self, pod: &Pod, index: usize) -> Result<(), Error> {
        let now = now_rfc3339();
        let ip = self.pod_ip(index);
        let host_ip = node_ip(index);
        let spec = pod.spec.as_ref();
        let containers: Vec<Value> = spec
            .map(|s| s.containers.iter())
            .into_iter()
            .flatten()
            .map(|c| container_status(c, true, true, json!({"running": {"startedAt": now}})))
            .collect();
        let inits: Vec<Value> = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .map(|c| container_status(c, true, false, completed(&now, &now)))
            .collect();
        let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let mut status = json!({
            "phase": "Running",
            "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                           cond("ContainersReady"), cond("PodScheduled")],
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now,
            "containerStatuses": containers,
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(inits);
        }
        self.patch_pod_status(pod, status).await
    }

    async fn complete(&self, pod: &Pod) -> Result<(), Error> {
        let now = now_rfc3339();
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        let containers: Vec<Value> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.iter())
            .into_iter()
            .flatten()
            .map(|c| container_status(c, false, false, completed(&started, &now)))
            .collect();
        let cond = |t: &str, s: &str, reason: Option<&str>| {
            let mut c =
                json!({"type": t, "status": s, "lastProbeTime": null, "lastTransitionTime": now});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            c
        };
        let status = json!({
            "phase": "Succeeded",
            "conditions": [cond("PodReadyToStartContainers", "False", None), cond("Initialized", "True", None),
                           cond("Ready", "False", Some("PodCompleted")),
                           cond("ContainersReady", "False", Some("PodCompleted")), cond("PodScheduled", "True", None)],
            "containerStatuses": containers,
        });
        self.patch_pod_status(pod, status).await
    }

    async fn delete(&self, pod: &Pod) -> Result<(), Error> {
        let _permit = self.writes.acquire().await.expect("semaphore open");
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(source) => Err(Error::Api {
                what: "deleting pod",
                name: format!("{ns}/{name}"),
                source,
            }),
        }
    }
}

/// Whether the pod runs to completion: Job pods (`restartPolicy` Never or OnFailure) and any
/// pod with `restartPolicy: Never`.
pub fn run_to_completion(pod: &Pod) -> bool {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let job = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Job");
    policy == "Never" || (job && policy == "OnFailure")
}

/// A simulated container's status: its identity, readiness and `state`.
fn container_status(
    c: &k8s_openapi::api::core::v1::Container,
    ready: bool,
    started: bool,
    state: Value,
) -> Value {
    json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
        "imageID": "", "containerID": format!("simulated://{}", c.name),
        "ready": ready, "started": started, "restartCount": 0, "state": state})
}

/// The `state` of a container that ran from `started` to `finished` and exited 0.
fn completed(started: &str, finished: &str) -> Value {
    json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "startedAt": started, "finishedAt": finished}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_ips() {
        assert_eq!(pod_subnet(0), (42, 0));
        assert_eq!(pod_subnet(255), (42, 255));
        assert_eq!(pod_subnet(256), (44, 0)); // 10.43 is the service range
        assert_eq!(node_ip(0), "172.16.0.1");
        assert_eq!(node_ip(4999), "172.16.19.136");
    }

    #[test]
    fn completion() {
        let pod = |policy: &str, owner: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "ownerReferences": owner.map(|k| vec![json!({
                    "apiVersion": "batch/v1", "kind": k, "name": "j", "uid": "u"})])},
                "spec": {"restartPolicy": policy, "containers": [{"name": "c"}]}}))
            .unwrap()
        };
        assert!(run_to_completion(&pod("Never", None)));
        assert!(run_to_completion(&pod("OnFailure", Some("Job"))));
        assert!(!run_to_completion(&pod("OnFailure", None)));
        assert!(!run_to_completion(&pod("Always", Some("ReplicaSet"))));
    }

    #[test]
    fn node_shape() {
        let c = NodeCapacity::default();
        let n: Node = serde_json::from_value(node_object("sim-1", 1)).unwrap();
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "sim-1");
        assert_eq!(labels["type"], "kwok");
        let s = node_status("sim-1", 1, &c);
        assert_eq!(s["status"]["allocatable"]["cpu"], "32");
        assert_eq!(s["status"]["nodeInfo"]["kubeletVersion"], "v1.35.0+rkube");
        assert_eq!(s["status"]["conditions"][3]["reason"], "KubeletReady");
        assert_eq!(s["status"]["addresses"][0]["address"], "172.16.0.2");
    }
}
