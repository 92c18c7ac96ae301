//! The scheduling framework, shaped as upstream's: `FilterPlugin`s decide whether a pod fits a
//! node (a [`Status`] with reasons), `ScorePlugin`s rank the nodes that fit (0–100 each, with an
//! optional normalization over all nodes), and a per-attempt [`CycleState`] lets a plugin
//! compute something once per pod (its pre-filter / pre-score step) instead of once per node.
//!
//! Plugins see nodes as [`NodeInfo`]: the node object plus the pods the scheduler's cache
//! holds for it (bound and assumed) and their summed requests.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod};

use crate::quantity;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// CPU assumed for a container without a CPU request when scoring (upstream's non-zero default).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The outcome class of a plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    /// The pod fits.
    Success,
    /// The pod does not fit now; preempting other pods might help.
    Unschedulable,
    /// The pod does not fit and preemption would not change that.
    UnschedulableAndUnresolvable,
    /// The plugin failed.
    Error,
}

/// A plugin's verdict with its reasons (the texts `FailedScheduling` messages count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The class.
    pub code: Code,
    /// Human-readable reasons, e.g. `Insufficient cpu`.
    pub reasons: Vec<String>,
    /// The plugin that decided, for failures.
    pub plugin: &'static str,
}

impl Status {
    /// Success.
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// A failure of `code` with reasons.
    pub fn new(code: Code, plugin: &'static str, reasons: Vec<String>) -> Status {
        Status {
            code,
            reasons,
            plugin,
        }
    }

    /// `Unschedulable` with one reason.
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status::new(Code::Unschedulable, plugin, vec![reason.into()])
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status::new(
            Code::UnschedulableAndUnresolvable,
            plugin,
            vec![reason.into()],
        )
    }

    /// Whether the pod fits.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// Data plugins keep for one scheduling attempt, keyed by type (one value per type).
#[derive(Default)]
pub struct CycleState {
    data: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `v`, replacing an earlier value of the same type.
    pub fn write<T: Any + Send + Sync>(&mut self, v: T) {
        self.data.insert(TypeId::of::<T>(), Box::new(v));
    }

    /// The stored value of type `T`.
    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data.get(&TypeId::of::<T>())?.downcast_ref()
    }
}

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Pods (for allocatable: how many may run; for requests: how many do).
    pub pods: i64,
}

impl Resource {
    fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.pods += o.pods;
    }

    fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.pods -= o.pods;
    }

    fn max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
    }
}

/// A pod with its requests computed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    /// Effective requests (`pods` is 1).
    pub requests: Resource,
    /// Requests with upstream's non-zero defaults for containers that set none (for scoring).
    pub non_zero_requests: Resource,
}

impl PodInfo {
    /// Computes the requests of `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let key = pod_key(&pod);
        let requests = pod_requests(&pod, false);
        let non_zero_requests = pod_requests(&pod, true);
        PodInfo {
            pod,
            key,
            requests,
            non_zero_requests,
        }
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str, milli: bool| {
        req.and_then(|m| m.get(name)).map(|q| {
            if milli {
                quantity::parse_milli(&q.0).unwrap_or(0)
            } else {
                quantity::parse_value(&q.0).unwrap_or(0)
            }
        })
    };
    let mut r = Resource {
        milli_cpu: get("cpu", true).unwrap_or(0),
        memory: get("memory", false).unwrap_or(0),
        pods: 0,
    };
    if non_zero {
        if get("cpu", true).is_none() {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if get("memory", false).is_none() {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The pod's effective requests, as upstream computes them: the larger of the app containers'
/// sum and each init container's own request (restartable "sidecar" init containers keep
/// running, so they add to both), plus `spec.overhead`.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = &pod.spec else {
        return Resource {
            pods: 1,
            ..Resource::default()
        };
    };
    let mut apps = Resource::default();
    for c in &spec.containers {
        apps.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max(&sidecars);
        } else {
            let mut during = sidecars;
            during.add(&r);
            init_max.max(&during);
        }
    }
    apps.add(&sidecars);
    apps.max(&init_max);
    if let Some(overhead) = &spec.overhead {
        if let Some(q) = overhead.get("cpu") {
            apps.milli_cpu += quantity::parse_milli(&q.0).unwrap_or(0);
        }
        if let Some(q) = overhead.get("memory") {
            apps.memory += quantity::parse_value(&q.0).unwrap_or(0);
        }
    }
    apps.pods = 1;
    apps
}

/// A node as plugins see it: the object, its allocatable resources, and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node (None while only pods bound to it are known).
    pub node: Option<Arc<Node>>,
    /// Node name.
    pub name: String,
    /// `status.allocatable` (pods: how many may run).
    pub allocatable: Resource,
    /// Sum of the pods' requests (pods: how many there are).
    pub requested: Resource,
    /// Sum of the pods' non-zero requests, for scoring.
    pub non_zero_requested: Resource,
    /// Pods bound or assumed here.
    pub pods: Vec<Arc<PodInfo>>,
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ..NodeInfo::default()
        };
        n.set_node(node);
        n
    }

    /// Replaces the node object (keeps the pods).
    pub fn set_node(&mut self, node: Arc<Node>) {
        let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let get = |name: &str, milli: bool| {
            alloc
                .and_then(|m| m.get(name))
                .map(|q| {
                    if milli {
                        quantity::parse_milli(&q.0).unwrap_or(0)
                    } else {
                        quantity::parse_value(&q.0).unwrap_or(0)
                    }
                })
                .unwrap_or(0)
        };
        self.allocatable = Resource {
            milli_cpu: get("cpu", true),
            memory: get("memory", false),
            pods: get("pods", false),
        };
        self.node = Some(node);
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.as_ref()?.metadata.labels.as_ref()
    }

    /// Adds a pod's requests.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.pods.push(pod);
    }

    /// Removes the pod `key` if present; whether it was.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.sub(&p.non_zero_requests);
        true
    }
}

/// Shared by all plugins.
pub trait Plugin: Send + Sync {
    /// The upstream plugin name, e.g. `NodeResourcesFit`.
    fn name(&self) -> &'static str;
}

/// Decides whether a pod may run on a node.
pub trait FilterPlugin: Plugin {
    /// Once per attempt, before any `filter`; a failure rejects every node.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _nodes: &[NodeInfo]) -> Status {
        Status::success()
    }

    /// Whether `pod` fits `node`.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks the nodes a pod fits.
pub trait ScorePlugin: Plugin {
    /// Once per attempt, before any `score`, with the feasible nodes.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _nodes: &[&NodeInfo]) {}

    /// The node's score, 0–100 after normalization.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Rescales the raw scores of all feasible nodes (in place) to 0–100.
    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Upstream's `DefaultNormalizeScore`: scales to 0–`MAX_NODE_SCORE` by the highest score,
/// reversed (higher raw is worse) when `reverse`.
pub fn default_normalize_score(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// The configured plugins, in upstream's default order.
pub struct Framework {
    /// Filters, run in order; the first failure decides for a node.
    pub filters: Vec<Arc<dyn FilterPlugin>>,
    /// Scorers with their weights.
    pub scorers: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

impl Framework {
    /// Runs every pre-filter; the first failure.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Status {
        for f in &self.filters {
            let s = f.pre_filter(state, pod, nodes);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// Runs the filters on one node; the first failure.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for f in &self.filters {
            let s = f.filter(state, pod, node);
            if !s.is_success() {
                return s;
            }
        }
        Status::success()
    }

    /// The weighted total score of each node in `nodes` (same order).
    pub fn run_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        for (p, _) in &self.scorers {
            p.pre_score(state, pod, nodes);
        }
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.scorers {
            for (s, n) in scores.iter_mut().zip(nodes) {
                *s = p.score(state, pod, n);
            }
            p.normalize_score(state, pod, &mut scores);
            for (t, s) in total.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    fn check_requests(p: serde_json::Value, cpu: i64, mem: i64) {
        let p = pod(p);
        let r = pod_requests(&p, false);
        assert_eq!((r.milli_cpu, r.memory, r.pods), (cpu, mem, 1));
    }

    #[test]
    fn requests() {
        check_requests(
            serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "0.5"}}}]}),
            1000,
            64 << 20,
        );
        // init containers: max of init vs sum of app.
        check_requests(
            serde_json::json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "2Mi"}}}]}),
            2000,
            2 << 20,
        );
        // overhead is added.
        check_requests(
            serde_json::json!({
            "overhead": {"cpu": "250m", "memory": "1Ki"},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}),
            1250,
            1024,
        );
        // a sidecar keeps running next to the app containers.
        check_requests(
            serde_json::json!({
            "initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}}],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}),
            2000,
            0,
        );
    }

    #[test]
    fn non_zero_defaults() {
        let p = pod(serde_json::json!({"containers": [{"name": "a"}]}));
        let r = pod_requests(&p, true);
        assert_eq!((r.milli_cpu, r.memory), (100, 200 << 20));
    }

    #[test]
    fn node_info_accounting() {
        let mut n = NodeInfo::new(Arc::new(node(serde_json::json!({"name": "n"}))));
        assert_eq!(n.allocatable.milli_cpu, 4000);
        let p = Arc::new(PodInfo::new(Arc::new(pod(
            serde_json::json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1"}}}]}),
        ))));
        n.add_pod(p.clone());
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.requested.pods, 1);
        assert!(n.remove_pod(&p.key));
        assert_eq!(n.requested, Resource::default());
    }

    #[test]
    fn normalize() {
        let mut s = vec![0, 5, 10];
        default_normalize_score(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize_score(&mut s, true);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize_score(&mut s, true);
        assert_eq!(s, vec![100, 100]);
    }
}
