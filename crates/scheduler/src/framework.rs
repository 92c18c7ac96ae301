//! The scheduling framework, shaped as upstream's: `FilterPlugin`s decide whether a pod fits a
//! node (a [`Status`] with reasons), `ScorePlugin`s rank the nodes that fit (0–100 each, with an
//! optional normalization over all nodes), and a per-attempt [`CycleState`] lets a plugin
//! compute something once per pod (its pre-filter / pre-score step) instead of once per node.
//!
//! Plugins see nodes as [`NodeInfo`]: the node object plus the pods the scheduler's cache
//! holds for it (bound and assumed) and their summed requests.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use rkube_core::quantity;

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

/// A value kept in a [`CycleState`]: any cloneable type, so preemption's dry runs can copy
/// the state of an attempt and change the copy (upstream's `StateData.Clone`).
trait StateData: Any + Send + Sync {
    fn clone_box(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_box(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Data plugins keep for one scheduling attempt, keyed by type (one value per type).
#[derive(Default)]
pub struct CycleState {
    // A handful of entries: a linear search beats hashing the TypeId.
    data: Vec<(TypeId, Box<dyn StateData>)>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_box()))
                .collect(),
        }
    }
}

impl CycleState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `v`, replacing an earlier value of the same type.
    pub fn write<T: Any + Clone + Send + Sync>(&mut self, v: T) {
        let id = TypeId::of::<T>();
        match self.data.iter_mut().find(|(k, _)| *k == id) {
            Some((_, old)) => *old = Box::new(v),
            None => self.data.push((id, Box::new(v))),
        }
    }

    /// The stored value of type `T`.
    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        let (_, v) = self.data.iter().find(|(k, _)| *k == id)?;
        (**v).as_any().downcast_ref()
    }

    /// The stored value of type `T`, to change it.
    pub fn read_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        let (_, v) = self.data.iter_mut().find(|(k, _)| *k == id)?;
        (**v).as_any_mut().downcast_mut()
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

/// Labels of each namespace (for affinity terms' `namespaceSelector`).
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

/// Whether a label selector selects `labels`; a missing selector selects nothing, an empty one
/// everything.
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    if let Some(ml) = &sel.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let v = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(v)),
            "NotIn" => v.is_none_or(|v| !values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => false,
        }
    })
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod's labels (empty when it has none).
pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// A pod's namespace.
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// A pod (anti-)affinity term made ready for matching, as upstream's `framework.AffinityTerm`:
/// `matchLabelKeys` / `mismatchLabelKeys` merged into the selector with the owner's label
/// values, and the namespaces it names (the owner's own when it names none and has no
/// `namespaceSelector`).
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// The node label whose values form the domains.
    pub topology_key: String,
    /// Which pods it selects (None: none).
    pub selector: Option<LabelSelector>,
    /// Namespaces named explicitly (or the owner's).
    pub namespaces: Vec<String>,
    /// Namespaces selected by label (None: none; empty: all).
    pub namespace_selector: Option<LabelSelector>,
    /// The weight of a preferred term (0 for required ones).
    pub weight: i64,
}

impl AffinityTerm {
    /// Prepares `t`, declared by `owner`.
    pub fn new(t: &PodAffinityTerm, owner: &Pod, weight: i64) -> AffinityTerm {
        let mut selector = t.label_selector.clone();
        let labels = pod_labels(owner);
        let keys = [
            (t.match_label_keys.as_deref(), "In"),
            (t.mismatch_label_keys.as_deref(), "NotIn"),
        ];
        for (keys, op) in keys {
            for key in keys.into_iter().flatten() {
                if let (Some(v), Some(sel)) = (labels.get(key), selector.as_mut()) {
                    let req = LabelSelectorRequirement {
                        key: key.clone(),
                        operator: op.into(),
                        values: Some(vec![v.clone()]),
                    };
                    let exprs = sel.match_expressions.get_or_insert_with(Vec::new);
                    // The apiserver may have merged it already.
                    if !exprs.contains(&req) {
                        exprs.push(req);
                    }
                }
            }
        }
        let named = t.namespaces.clone().unwrap_or_default();
        let namespaces = if named.is_empty() && t.namespace_selector.is_none() {
            vec![pod_namespace(owner).to_string()]
        } else {
            named
        };
        AffinityTerm {
            topology_key: t.topology_key.clone(),
            selector,
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            weight,
        }
    }

    /// Whether the term selects `pod` (`ns_labels`: labels of the namespaces).
    pub fn matches(&self, pod: &Pod, ns_labels: &NamespaceLabels) -> bool {
        let ns = pod_namespace(pod);
        let ns_ok = self.namespaces.iter().any(|n| n == ns)
            || self.namespace_selector.as_ref().is_some_and(|sel| {
                selector_matches(Some(sel), ns_labels.get(ns).unwrap_or(&NO_LABELS))
            });
        ns_ok && selector_matches(self.selector.as_ref(), pod_labels(pod))
    }
}

/// A pod's (anti-)affinity terms, prepared once when its [`PodInfo`] is made.
#[derive(Debug, Clone, Default)]
pub struct PodAffinityTerms {
    /// Required affinity.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required anti-affinity.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred affinity (with weights).
    pub preferred_affinity: Vec<AffinityTerm>,
    /// Preferred anti-affinity (with weights).
    pub preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodAffinityTerms {
    fn new(pod: &Pod) -> Option<Box<PodAffinityTerms>> {
        let a = pod.spec.as_ref()?.affinity.as_ref()?;
        let aff = a.pod_affinity.as_ref();
        let anti = a.pod_anti_affinity.as_ref();
        let required = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, pod, 0))
                .collect()
        };
        let preferred = |ts: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            ts.into_iter()
                .flatten()
                .filter(|w| w.weight != 0)
                .map(|w| AffinityTerm::new(&w.pod_affinity_term, pod, i64::from(w.weight)))
                .collect::<Vec<_>>()
        };
        let terms = PodAffinityTerms {
            required_affinity: required(aff.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti.and_then(|p| {
                p.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(aff.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(anti.and_then(|p| {
                p.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        };
        let empty = terms.required_affinity.is_empty()
            && terms.required_anti_affinity.is_empty()
            && terms.preferred_affinity.is_empty()
            && terms.preferred_anti_affinity.is_empty();
        (!empty).then(|| Box::new(terms))
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
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Its pod (anti-)affinity terms, if any.
    pub affinity: Option<Box<PodAffinityTerms>>,
}

impl PodInfo {
    /// Computes the requests of `pod`.
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let key = pod_key(&pod);
        let requests = pod_requests(&pod, false);
        let non_zero_requests = pod_requests(&pod, true);
        let priority = pod_priority(&pod);
        let affinity = PodAffinityTerms::new(&pod);
        PodInfo {
            pod,
            key,
            requests,
            non_zero_requests,
            priority,
            affinity,
        }
    }

    /// `status.startTime`, if the pod has started.
    pub fn start_time(&self) -> Option<jiff::Timestamp> {
        self.pod.status.as_ref()?.start_time.as_ref().map(|t| t.0)
    }

    /// Its affinity terms (empty when it has none).
    pub fn affinity_terms(&self) -> &PodAffinityTerms {
        static NONE: PodAffinityTerms = PodAffinityTerms {
            required_affinity: Vec::new(),
            required_anti_affinity: Vec::new(),
            preferred_affinity: Vec::new(),
            preferred_anti_affinity: Vec::new(),
        };
        self.affinity.as_deref().unwrap_or(&NONE)
    }

    /// Whether the pod has terms that count when scoring other pods.
    pub fn has_scoring_affinity(&self) -> bool {
        self.affinity.as_deref().is_some_and(|a| {
            !a.required_affinity.is_empty()
                || !a.preferred_affinity.is_empty()
                || !a.preferred_anti_affinity.is_empty()
        })
    }

    /// Whether the pod has required anti-affinity terms.
    pub fn has_required_anti_affinity(&self) -> bool {
        !self.affinity_terms().required_anti_affinity.is_empty()
    }

    /// Whether the pod is being deleted.
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// The pod's priority (`spec.priority`, which admission fills from its PriorityClass).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
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
                quantity::milli_value(&q.0).unwrap_or(0)
            } else {
                quantity::value(&q.0).unwrap_or(0)
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
            apps.milli_cpu += quantity::milli_value(&q.0).unwrap_or(0);
        }
        if let Some(q) = overhead.get("memory") {
            apps.memory += quantity::value(&q.0).unwrap_or(0);
        }
    }
    apps.pods = 1;
    apps
}

/// Cluster-wide counts of pods with affinity terms (the sums of the nodes' counters), so an
/// attempt can skip walking the nodes when no pod has such terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AffinityTotals {
    /// Pods whose terms count when scoring other pods.
    pub pods_with_affinity: usize,
    /// Pods with required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
}

static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A generation number never handed out before (0 is the empty default node's).
fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
    /// Pods nominated to run here after preempting others (not counted in `requested`).
    pub nominated: Vec<Arc<PodInfo>>,
    /// `spec.unschedulable` (kept here so filters need not touch the node object).
    pub unschedulable: bool,
    /// Whether the node has taints.
    pub tainted: bool,
    /// Images on the node (normalized names, every name of each image) → size in bytes.
    pub images: HashMap<String, i64>,
    /// How many of `pods` have terms that count when scoring other pods (required affinity,
    /// preferred affinity or anti-affinity).
    pub pods_with_affinity: usize,
    /// Changes whenever the node or its pods change; unique across all `NodeInfo`s of the
    /// process (upstream's `Generation`), so per-node results can be kept between attempts.
    pub generation: u64,
    /// How many of `pods` have required anti-affinity terms.
    pub pods_with_required_anti_affinity: usize,
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
                        quantity::milli_value(&q.0).unwrap_or(0)
                    } else {
                        quantity::value(&q.0).unwrap_or(0)
                    }
                })
                .unwrap_or(0)
        };
        self.allocatable = Resource {
            milli_cpu: get("cpu", true),
            memory: get("memory", false),
            pods: get("pods", false),
        };
        let images = node.status.as_ref().and_then(|s| s.images.as_ref());
        let old_images = self
            .node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.images.as_ref());
        if self.node.is_none() || images != old_images {
            self.images = images
                .into_iter()
                .flatten()
                .flat_map(|i| {
                    let size = i.size_bytes.unwrap_or(0);
                    i.names.iter().flatten().map(move |n| {
                        (
                            crate::plugins::image_locality::normalized_image_name(n),
                            size,
                        )
                    })
                })
                .collect();
        }
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.tainted = spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        self.node = Some(node);
        self.generation = next_generation();
    }

    /// The node's taints.
    pub fn taints(&self) -> &[k8s_openapi::api::core::v1::Taint] {
        if !self.tainted {
            return &[];
        }
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.node.as_ref()?.metadata.labels.as_ref()
    }

    /// Adds a pod's requests.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.pods_with_affinity += usize::from(pod.has_scoring_affinity());
        self.generation = next_generation();
        self.pods_with_required_anti_affinity += usize::from(pod.has_required_anti_affinity());
        self.pods.push(pod);
    }

    /// Removes the pod `key` if present; whether it was.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let p = self.pods.swap_remove(i);
        self.pods_with_affinity -= usize::from(p.has_scoring_affinity());
        self.generation = next_generation();
        self.pods_with_required_anti_affinity -= usize::from(p.has_required_anti_affinity());
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

    /// Updates the pre-filter state as if `added` ran on `node` (upstream's
    /// `PreFilterExtensions.AddPod`, for nominated pods and preemption's dry runs).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _added: &PodInfo, _node: &NodeInfo) {
    }

    /// Updates the pre-filter state as if `removed` no longer ran on `node`.
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
}

/// Ranks the nodes a pod fits.
pub trait ScorePlugin: Plugin {
    /// Once per attempt, before any `score`, with the feasible nodes and all nodes.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _all_nodes: &[NodeInfo],
    ) {
    }

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

    /// Tells every filter's pre-filter state that `added` now runs on `node`.
    pub fn run_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
    ) {
        for f in &self.filters {
            f.add_pod(state, pod, added, node);
        }
    }

    /// Tells every filter's pre-filter state that `removed` no longer runs on `node`.
    pub fn run_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        for f in &self.filters {
            f.remove_pod(state, pod, removed, node);
        }
    }

    /// Runs the filters with the pods nominated to `node` of at least the pod's priority
    /// counted as running there (upstream's `RunFilterPluginsWithNominatedPods`): the space a
    /// preemption freed stays reserved for its preemptor. As upstream, the pod must fit both
    /// with and without them (an affinity to a nominated pod must not count).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let mut nominated = node
            .nominated
            .iter()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .peekable();
        if nominated.peek().is_none() {
            return self.run_filter(state, pod, node);
        }
        let mut with_state = state.clone();
        let mut with_node = node.clone();
        for p in nominated {
            with_node.add_pod(p.clone());
            self.run_add_pod(&mut with_state, pod, p, &with_node);
        }
        let s = self.run_filter(&with_state, pod, &with_node);
        if !s.is_success() {
            return s;
        }
        self.run_filter(state, pod, node)
    }

    /// The weighted total score of each node in `nodes` (same order).
    pub fn run_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        all_nodes: &[NodeInfo],
    ) -> Vec<i64> {
        let mut total = vec![0i64; nodes.len()];
        for (p, _) in &self.scorers {
            p.pre_score(state, pod, nodes, all_nodes);
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
