//! InterPodAffinity: pod affinity and anti-affinity, as upstream's plugin.
//!
//! Filter: the incoming pod's required affinity (every term must find a matching pod in the
//! node's domain, except for the first pod of a group that selects itself) and required
//! anti-affinity, and the required anti-affinity of pods already running against it. Counts
//! per topology domain are computed once per attempt (pre-filter), so the per-node filter is a
//! few map lookups; nominated pods and preemption's dry runs adjust them through `add_pod` /
//! `remove_pod`.
//!
//! Score: the incoming pod's preferred terms (+weight per matching pod in the node's domain,
//! −weight for anti-affinity) and, symmetrically, running pods' terms that select the incoming
//! pod (their preferred terms with their weights, their required affinity with upstream's
//! `hardPodAffinityWeight` 1), normalized to 0–100 between the lowest and highest node.
//!
//! Terms honour `namespaces`, `namespaceSelector` (namespace labels from the cache) and
//! `matchLabelKeys` / `mismatchLabelKeys` (see [`crate::framework::AffinityTerm`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::framework::{
    AffinityTerm, AffinityTotals, Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NamespaceLabels,
    NodeInfo, Plugin, PodInfo, ScorePlugin, Status, pod_labels, pod_namespace,
};

pub use crate::framework::selector_matches;

/// The plugin name.
pub const NAME: &str = "InterPodAffinity";
/// Upstream's reasons.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The incoming pod's anti-affinity rejects the node.
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// A running pod's anti-affinity rejects the incoming pod.
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// Upstream's default weight of running pods' required affinity terms in scoring.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// The InterPodAffinity filter and scorer.
pub struct InterPodAffinity;

/// The namespace labels of the cluster, written into the cycle state by the scheduler before
/// the pre-filters run (absent: only `namespaces` and the empty selector match).
#[derive(Clone, Default)]
pub struct NamespaceLabelsState(pub Arc<NamespaceLabels>);

fn namespace_labels(state: &CycleState) -> Arc<NamespaceLabels> {
    state
        .read::<NamespaceLabelsState>()
        .map(|s| s.0.clone())
        .unwrap_or_default()
}

/// Counts (or scores) per topology key, then value; looked up by `&str` without allocating.
#[derive(Clone, Default, Debug)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, value: &str, delta: i64) {
        let values = match self.0.get_mut(key) {
            Some(v) => v,
            None => self.0.entry(key.to_string()).or_default(),
        };
        let c = match values.get_mut(value) {
            Some(c) => c,
            None => values.entry(value.to_string()).or_default(),
        };
        *c += delta;
        // Upstream drops emptied pairs, so "no pod matches anywhere" stays detectable.
        if *c == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|v| v.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The pre-filter's counts per topology domain.
#[derive(Clone, Default)]
struct Counts {
    /// Domains where a running pod's anti-affinity selects the incoming pod.
    existing_anti: TopologyCounts,
    /// Domains with pods matching all of the incoming pod's affinity terms.
    affinity: TopologyCounts,
    /// Domains with pods matching the incoming pod's anti-affinity terms.
    anti: TopologyCounts,
}

impl Counts {
    /// Counts `existing` on a node with `labels`, with weight `delta` (1: add, -1: remove).
    fn count_pod(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        labels: &BTreeMap<String, String>,
        ns: &NamespaceLabels,
        delta: i64,
    ) {
        for t in &existing.affinity_terms().required_anti_affinity {
            if let Some(v) = labels.get(&t.topology_key)
                && t.matches(&pod.pod, ns)
            {
                self.existing_anti.add(&t.topology_key, v, delta);
            }
        }
        let terms = pod.affinity_terms();
        if !terms.required_affinity.is_empty()
            && terms
                .required_affinity
                .iter()
                .all(|t| t.matches(&existing.pod, ns))
        {
            for t in &terms.required_affinity {
                if let Some(v) = labels.get(&t.topology_key) {
                    self.affinity.add(&t.topology_key, v, delta);
                }
            }
        }
        for t in &terms.required_anti_affinity {
            if let Some(v) = labels.get(&t.topology_key)
                && t.matches(&existing.pod, ns)
            {
                self.anti.add(&t.topology_key, v, delta);
            }
        }
    }

    /// The counts of one node's pods. Without required terms of its own, only running pods'
    /// anti-affinity concerns the pod.
    fn of_node(pod: &PodInfo, node: &NodeInfo, ns: &NamespaceLabels) -> Counts {
        let mut c = Counts::default();
        let Some(labels) = node.labels() else {
            return c;
        };
        let terms = pod.affinity_terms();
        if !terms.required_affinity.is_empty() || !terms.required_anti_affinity.is_empty() {
            for existing in &node.pods {
                c.count_pod(pod, existing, labels, ns, 1);
            }
        } else if node.pods_with_required_anti_affinity > 0 {
            for existing in node.pods.iter().filter(|p| p.has_required_anti_affinity()) {
                c.count_pod(pod, existing, labels, ns, 1);
            }
        }
        c
    }

    /// Adds `other` times `sign`.
    fn apply(&mut self, other: &Counts, sign: i64) {
        let pairs = [
            (&mut self.existing_anti, &other.existing_anti),
            (&mut self.affinity, &other.affinity),
            (&mut self.anti, &other.anti),
        ];
        for (mine, theirs) in pairs {
            for (k, values) in &theirs.0 {
                for (v, c) in values {
                    mine.add(k, v, sign * c);
                }
            }
        }
    }
}

/// The counts for one kind of incoming pod (same namespace, labels and required terms), kept
/// between attempts with each node's share and the node generation it was computed at; an
/// attempt recounts only the nodes that changed since. Pods of a workload share one entry.
struct Memo {
    key: String,
    generations: Vec<u64>,
    per_node: Vec<Counts>,
    total: Arc<Counts>,
    last_used: u64,
}

/// Memos kept at most.
const MAX_MEMOS: usize = 8;

static MEMOS: Mutex<(u64, Vec<Memo>)> = Mutex::new((0, Vec::new()));

impl Memo {
    /// Brings the counts up to date with `nodes`.
    fn refresh(&mut self, pod: &PodInfo, nodes: &[NodeInfo], ns: &NamespaceLabels) {
        let total = Arc::make_mut(&mut self.total);
        if self.per_node.len() > nodes.len() {
            for c in self.per_node.drain(nodes.len()..) {
                total.apply(&c, -1);
            }
            self.generations.truncate(nodes.len());
        }
        // Generation 0 is the empty default node, whose counts are empty too.
        self.generations.resize(nodes.len(), 0);
        self.per_node.resize_with(nodes.len(), Counts::default);
        for (i, node) in nodes.iter().enumerate() {
            if self.generations[i] == node.generation {
                continue;
            }
            let c = Counts::of_node(pod, node, ns);
            total.apply(&self.per_node[i], -1);
            total.apply(&c, 1);
            self.per_node[i] = c;
            self.generations[i] = node.generation;
        }
    }
}

/// What the counts depend on besides the nodes, None when that includes other namespaces'
/// labels (a term of the pod's own with a non-empty `namespaceSelector`).
fn memo_key(pod: &PodInfo, ns: &NamespaceLabels) -> Option<String> {
    let terms = pod.affinity_terms();
    let own = terms
        .required_affinity
        .iter()
        .chain(&terms.required_anti_affinity);
    let own_selects_namespaces = own.clone().any(|t| {
        t.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|m| !m.is_empty())
        })
    });
    if own_selects_namespaces {
        return None;
    }
    let pod_ns = pod_namespace(&pod.pod);
    Some(format!(
        "{pod_ns}|{:?}|{:?}|{:?}|{:?}",
        pod_labels(&pod.pod),
        ns.get(pod_ns),
        terms.required_affinity,
        terms.required_anti_affinity
    ))
}

/// The counts for `pod` over `nodes`, from a memo when possible.
fn counts(pod: &PodInfo, nodes: &[NodeInfo], ns: &NamespaceLabels) -> Arc<Counts> {
    let Some(key) = memo_key(pod, ns) else {
        let mut total = Counts::default();
        for node in nodes {
            total.apply(&Counts::of_node(pod, node, ns), 1);
        }
        return Arc::new(total);
    };
    let mut guard = MEMOS.lock().unwrap_or_else(|e| e.into_inner());
    let (clock, memos) = &mut *guard;
    *clock += 1;
    let i = match memos.iter().position(|m| m.key == key) {
        Some(i) => i,
        None => {
            if memos.len() >= MAX_MEMOS
                && let Some(lru) = (0..memos.len()).min_by_key(|&i| memos[i].last_used)
            {
                memos.swap_remove(lru);
            }
            memos.push(Memo {
                key,
                generations: Vec::new(),
                per_node: Vec::new(),
                total: Arc::default(),
                last_used: 0,
            });
            memos.len() - 1
        }
    };
    let memo = &mut memos[i];
    memo.last_used = *clock;
    memo.refresh(pod, nodes, ns);
    memo.total.clone()
}

#[derive(Clone, Default)]
struct PreFilterState {
    counts: Arc<Counts>,
    ns_labels: Arc<NamespaceLabels>,
}

impl PreFilterState {
    /// Counts `existing` on `node` with weight `delta` (1: add, -1: remove).
    fn update(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        let Some(labels) = node.labels() else {
            return;
        };
        let ns = self.ns_labels.clone();
        Arc::make_mut(&mut self.counts).count_pod(pod, existing, labels, &ns, delta);
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let ns_labels = namespace_labels(state);
        let terms = pod.affinity_terms();
        let own = !terms.required_affinity.is_empty() || !terms.required_anti_affinity.is_empty();
        let nothing_to_count = !own
            && state
                .read::<AffinityTotals>()
                .is_some_and(|t| t.pods_with_required_anti_affinity == 0);
        let counts = if nothing_to_count {
            Arc::default()
        } else {
            counts(pod, nodes, &ns_labels)
        };
        state.write(PreFilterState { counts, ns_labels });
        Status::success()
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update(pod, added, node, 1);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update(pod, removed, node, -1);
        }
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::success();
        };
        let terms = pod.affinity_terms();
        if s.counts.existing_anti.0.is_empty()
            && terms.required_anti_affinity.is_empty()
            && terms.required_affinity.is_empty()
        {
            // Nothing to check: return before touching the node's labels, whose memory is
            // a cache miss per node (most of this filter's cost in a profile).
            return Status::success();
        }
        let Some(labels) = node.labels() else {
            return Status::success();
        };
        for (key, values) in &s.counts.existing_anti.0 {
            if let Some(v) = labels.get(key)
                && values.get(v).is_some_and(|c| *c > 0)
            {
                return Status::unschedulable(NAME, ERR_EXISTING_ANTI_AFFINITY);
            }
        }
        for t in &terms.required_anti_affinity {
            if let Some(v) = labels.get(&t.topology_key)
                && s.counts.anti.get(&t.topology_key, v) > 0
            {
                return Status::unschedulable(NAME, ERR_ANTI_AFFINITY);
            }
        }
        if !terms.required_affinity.is_empty() {
            let mut all_keys = true;
            let mut pods_exist = true;
            for t in &terms.required_affinity {
                match labels.get(&t.topology_key) {
                    Some(v) => pods_exist &= s.counts.affinity.get(&t.topology_key, v) > 0,
                    None => all_keys = false,
                }
            }
            // The first pod of a group that selects itself may go anywhere with the keys.
            let first_of_group = || {
                s.counts.affinity.is_empty()
                    && terms
                        .required_affinity
                        .iter()
                        .all(|t| t.matches(&pod.pod, &s.ns_labels))
            };
            if !all_keys || (!pods_exist && !first_of_group()) {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    NAME,
                    vec![ERR_AFFINITY.into()],
                );
            }
        }
        Status::success()
    }
}

/// Scores per topology domain, from preferred terms both ways.
#[derive(Clone, Default)]
struct PreScoreState {
    scores: TopologyCounts,
    active: bool,
}

fn score_terms(
    out: &mut TopologyCounts,
    terms: &[AffinityTerm],
    target: &PodInfo,
    labels: &BTreeMap<String, String>,
    ns: &NamespaceLabels,
    sign: i64,
    weight: Option<i64>,
) {
    for t in terms {
        if let Some(v) = labels.get(&t.topology_key)
            && t.matches(&target.pod, ns)
        {
            out.add(&t.topology_key, v, sign * weight.unwrap_or(t.weight));
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        all_nodes: &[NodeInfo],
    ) {
        let ns = namespace_labels(state);
        let terms = pod.affinity_terms();
        let has_preferred =
            !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();
        let mut s = PreScoreState::default();
        let nothing_to_score = !has_preferred
            && state
                .read::<AffinityTotals>()
                .is_some_and(|t| t.pods_with_affinity == 0);
        if nothing_to_score {
            state.write(s);
            return;
        }
        // Pods on every node count, not only on the feasible ones.
        for node in all_nodes {
            if !has_preferred && node.pods_with_affinity == 0 {
                continue;
            }
            let Some(labels) = node.labels() else {
                continue;
            };
            for existing in &node.pods {
                let out = &mut s.scores;
                if has_preferred {
                    score_terms(
                        out,
                        &terms.preferred_affinity,
                        existing,
                        labels,
                        &ns,
                        1,
                        None,
                    );
                    score_terms(
                        out,
                        &terms.preferred_anti_affinity,
                        existing,
                        labels,
                        &ns,
                        -1,
                        None,
                    );
                }
                if let Some(theirs) = existing.affinity.as_deref() {
                    let hard = Some(HARD_POD_AFFINITY_WEIGHT);
                    score_terms(out, &theirs.required_affinity, pod, labels, &ns, 1, hard);
                    score_terms(out, &theirs.preferred_affinity, pod, labels, &ns, 1, None);
                    score_terms(
                        out,
                        &theirs.preferred_anti_affinity,
                        pod,
                        labels,
                        &ns,
                        -1,
                        None,
                    );
                }
            }
        }
        s.active = !s.scores.is_empty();
        state.write(s);
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>().filter(|s| s.active) else {
            return 0;
        };
        let Some(labels) = node.labels() else {
            return 0;
        };
        s.scores
            .0
            .iter()
            .filter_map(|(key, values)| values.get(labels.get(key)?))
            .sum()
    }

    fn normalize_score(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        if !state.read::<PreScoreState>().is_some_and(|s| s.active) {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::filter_with_named_pods;
    use serde_json::json;

    fn anti(app: &str) -> serde_json::Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}})
    }

    fn aff(app: &str, key: &str) -> serde_json::Value {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app]}]}, "topologyKey": key}]}}})
    }

    #[test]
    fn filter() {
        let nodes = [
            json!({"name": "a", "labels": {"zone": "z1"}}),
            json!({"name": "b", "labels": {"zone": "z1"}}),
            json!({"name": "c", "labels": {"zone": "z2"}}),
        ];
        let web = (json!({"app": "web"}), json!({}));
        let web_anti = (json!({"app": "web"}), anti("web"));
        let check = |labels,
                     spec,
                     on: [&[(serde_json::Value, serde_json::Value)]; 3],
                     expect: [Option<&str>; 3]| {
            let got = filter_with_named_pods(&InterPodAffinity, labels, spec, &nodes, &on);
            assert_eq!(got, expect);
        };
        // Incoming anti-affinity: not beside another web pod.
        check(
            json!({"app": "web"}),
            anti("web"),
            [std::slice::from_ref(&web), &[], &[]],
            [Some(ERR_ANTI_AFFINITY), None, None],
        );
        // Existing anti-affinity: a running web pod refuses other web pods beside it.
        check(
            json!({"app": "web"}),
            json!({}),
            [std::slice::from_ref(&web_anti), &[], &[]],
            [Some(ERR_EXISTING_ANTI_AFFINITY), None, None],
        );
        check(
            json!({"app": "db"}),
            json!({}),
            [&[web_anti], &[], &[]],
            [None, None, None],
        );
        // Affinity by zone: only where a web pod runs in the same zone.
        check(
            json!({"app": "cache"}),
            aff("web", "zone"),
            [std::slice::from_ref(&web), &[], &[]],
            [None, None, Some(ERR_AFFINITY)],
        );
        // No web pod anywhere and the pod is not web itself: nowhere.
        check(
            json!({"app": "cache"}),
            aff("web", "zone"),
            [&[], &[], &[]],
            [Some(ERR_AFFINITY); 3],
        );
        // The first pod of a self-selecting group goes anywhere.
        check(
            json!({"app": "web"}),
            aff("web", "zone"),
            [&[], &[], &[]],
            [None, None, None],
        );
    }
}

#[cfg(test)]
mod more_tests {
    //! Namespaces, matchLabelKeys and scoring, with pods in several namespaces.

    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::testing::node;

    /// A pod `ns/name` with labels and spec.
    fn pod_in(ns: &str, name: &str, labels: Value, spec: Value) -> Arc<PodInfo> {
        let mut spec = spec;
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "c", "image": "i"}]);
        }
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": spec}))
            .unwrap(),
        )))
    }

    struct World {
        nodes: Vec<NodeInfo>,
        state: CycleState,
    }

    /// Nodes `(name, zone)` with pods on them, and namespaces `(name, labels)`.
    fn world(nodes: &[(&str, &str, Vec<Arc<PodInfo>>)], namespaces: &[(&str, Value)]) -> World {
        let nodes = nodes
            .iter()
            .map(|(n, zone, pods)| {
                let mut ni =
                    NodeInfo::new(Arc::new(node(json!({"name": n, "labels": {"zone": zone}}))));
                pods.iter().for_each(|p| ni.add_pod(p.clone()));
                ni
            })
            .collect();
        let mut labels = NamespaceLabels::new();
        for (n, l) in namespaces {
            labels.insert(n.to_string(), serde_json::from_value(l.clone()).unwrap());
        }
        let mut state = CycleState::new();
        state.write(NamespaceLabelsState(Arc::new(labels)));
        World { nodes, state }
    }

    impl World {
        fn filter(&self, pod: &PodInfo) -> Vec<Option<String>> {
            let mut state = self.state.clone();
            assert!(
                InterPodAffinity
                    .pre_filter(&mut state, pod, &self.nodes)
                    .is_success()
            );
            self.nodes
                .iter()
                .map(|n| {
                    InterPodAffinity
                        .filter(&state, pod, n)
                        .reasons
                        .first()
                        .cloned()
                })
                .collect()
        }

        fn scores(&self, pod: &PodInfo) -> Vec<i64> {
            let mut state = self.state.clone();
            let refs: Vec<&NodeInfo> = self.nodes.iter().collect();
            InterPodAffinity.pre_score(&mut state, pod, &refs, &self.nodes);
            let mut s: Vec<i64> = refs
                .iter()
                .map(|n| InterPodAffinity.score(&state, pod, n))
                .collect();
            InterPodAffinity.normalize_score(&state, pod, &mut s);
            s
        }
    }

    fn term(extra: Value) -> Value {
        let mut t = json!({"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    }

    fn required_affinity(t: Value) -> Value {
        json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}}})
    }

    #[test]
    fn namespaces_and_namespace_selector() {
        let db = |ns| pod_in(ns, "db", json!({"app": "db"}), json!({}));
        let w = world(
            &[("a", "z1", vec![db("prod")]), ("b", "z2", vec![db("dev")])],
            &[
                ("prod", json!({"env": "prod"})),
                ("dev", json!({"env": "dev"})),
            ],
        );
        let ok = None;
        let no = Some(ERR_AFFINITY.to_string());
        // No namespaces: the pod's own (prod).
        let p = pod_in("prod", "web", json!({}), required_affinity(term(json!({}))));
        assert_eq!(w.filter(&p), [ok.clone(), no.clone()]);
        // Named namespaces.
        let p = pod_in(
            "prod",
            "web",
            json!({}),
            required_affinity(term(json!({"namespaces": ["dev"]}))),
        );
        assert_eq!(w.filter(&p), [no.clone(), ok.clone()]);
        // A namespace selector by label.
        let sel = json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}});
        let p = pod_in("prod", "web", json!({}), required_affinity(term(sel)));
        assert_eq!(w.filter(&p), [no.clone(), ok.clone()]);
        // The empty selector: every namespace.
        let p = pod_in(
            "other",
            "web",
            json!({}),
            required_affinity(term(json!({"namespaceSelector": {}}))),
        );
        assert_eq!(w.filter(&p), [ok.clone(), ok.clone()]);
        // Existing pods' anti-affinity with a namespace selector refuses pods of those
        // namespaces only.
        let guard = pod_in(
            "prod",
            "guard",
            json!({}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                term(json!({"namespaceSelector": {"matchLabels": {"env": "dev"}}}))]}}}),
        );
        let w = world(
            &[("a", "z1", vec![guard]), ("b", "z2", vec![])],
            &[
                ("prod", json!({"env": "prod"})),
                ("dev", json!({"env": "dev"})),
            ],
        );
        let refused = Some(ERR_EXISTING_ANTI_AFFINITY.to_string());
        assert_eq!(
            w.filter(&pod_in("dev", "x", json!({"app": "db"}), json!({}))),
            [refused, ok.clone()]
        );
        assert_eq!(
            w.filter(&pod_in("prod", "x", json!({"app": "db"}), json!({}))),
            [ok.clone(), ok]
        );
    }

    #[test]
    fn match_and_mismatch_label_keys() {
        // Anti-affinity against other versions of the same app (mismatchLabelKeys) and
        // affinity to the same tenant (matchLabelKeys).
        let app = |name, version| {
            pod_in(
                "default",
                name,
                json!({"app": "db", "version": version}),
                json!({}),
            )
        };
        let w = world(
            &[
                ("a", "z1", vec![app("db-v1", "v1")]),
                ("b", "z2", vec![app("db-v2", "v2")]),
            ],
            &[],
        );
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({"mismatchLabelKeys": ["version"]}))]}}});
        let p = pod_in(
            "default",
            "new",
            json!({"app": "db", "version": "v2"}),
            anti,
        );
        assert_eq!(
            w.filter(&p),
            [Some(ERR_ANTI_AFFINITY.to_string()), None],
            "only the v1 pod's zone is refused"
        );
        let aff = required_affinity(term(json!({"matchLabelKeys": ["version"]})));
        let p = pod_in("default", "new", json!({"version": "v1"}), aff);
        assert_eq!(w.filter(&p), [None, Some(ERR_AFFINITY.to_string())]);
    }

    #[test]
    fn preferred_terms_score_both_ways() {
        let db = pod_in("default", "db", json!({"app": "db"}), json!({}));
        let w = world(
            &[
                ("a", "z1", vec![db.clone()]),
                ("b", "z1", vec![]),
                ("c", "z2", vec![]),
            ],
            &[],
        );
        let pref = |kind: &str, weight: i64| {
            json!({"affinity": {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": weight, "podAffinityTerm": term(json!({}))}]}}})
        };
        // Affinity: the db's zone (a and b) scores 100, the other 0.
        let p = pod_in("default", "web", json!({}), pref("podAffinity", 10));
        assert_eq!(w.scores(&p), [100, 100, 0]);
        // Anti-affinity: the other way round.
        let p = pod_in("default", "web", json!({}), pref("podAntiAffinity", 10));
        assert_eq!(w.scores(&p), [0, 0, 100]);
        // No terms anywhere: all 0.
        assert_eq!(
            w.scores(&pod_in("default", "web", json!({}), json!({}))),
            [0, 0, 0]
        );
        // Symmetry: a running pod preferring app=db pods near it attracts the incoming db pod;
        // a required affinity counts with weight 1, outweighed by a preferred anti term.
        let lover = pod_in("default", "lover", json!({}), pref("podAffinity", 5));
        let hater = pod_in("default", "hater", json!({}), pref("podAntiAffinity", 5));
        let needy = pod_in(
            "default",
            "needy",
            json!({}),
            required_affinity(term(json!({}))),
        );
        let w = world(
            &[
                ("a", "z1", vec![lover]),
                ("b", "z2", vec![needy]),
                ("c", "z3", vec![hater]),
            ],
            &[],
        );
        let incoming = pod_in("default", "db2", json!({"app": "db"}), json!({}));
        // raw: a +5, b +1, c -5 → normalized over [-5, 5].
        assert_eq!(w.scores(&incoming), [100, 60, 0]);
    }

    #[test]
    fn add_and_remove_pod_adjust_the_counts() {
        let db = pod_in("default", "db", json!({"app": "db"}), json!({}));
        let w = world(&[("a", "z1", vec![db.clone()]), ("b", "z2", vec![])], &[]);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({}))]}}});
        let p = pod_in("default", "web", json!({}), anti);
        let mut state = w.state.clone();
        InterPodAffinity.pre_filter(&mut state, &p, &w.nodes);
        assert!(
            !InterPodAffinity
                .filter(&state, &p, &w.nodes[0])
                .is_success()
        );
        InterPodAffinity.remove_pod(&mut state, &p, &db, &w.nodes[0]);
        assert!(
            InterPodAffinity
                .filter(&state, &p, &w.nodes[0])
                .is_success()
        );
        InterPodAffinity.add_pod(&mut state, &p, &db, &w.nodes[1]);
        assert!(
            !InterPodAffinity
                .filter(&state, &p, &w.nodes[1])
                .is_success()
        );
    }

    #[test]
    fn counts_kept_between_attempts_follow_node_changes() {
        let db = pod_in("memo", "db", json!({"app": "db"}), json!({}));
        let mut w = world(&[("a", "z1", vec![]), ("b", "z2", vec![])], &[]);
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({}))]}}});
        let p = pod_in("memo", "web", json!({}), anti);
        let refused = Some(ERR_ANTI_AFFINITY.to_string());
        assert_eq!(w.filter(&p), [None, None]);
        w.nodes[0].add_pod(db.clone());
        assert_eq!(w.filter(&p), [refused.clone(), None]);
        w.nodes[0].remove_pod(&db.key);
        w.nodes[1].add_pod(db.clone());
        assert_eq!(w.filter(&p), [None, refused.clone()]);
        w.nodes.swap(0, 1);
        assert_eq!(w.filter(&p), [refused.clone(), None]);
        w.nodes.truncate(1);
        assert_eq!(w.filter(&p), [refused]);
        w.nodes[0].remove_pod(&db.key);
        assert_eq!(w.filter(&p), [None]);
    }
}
