//! One scheduling attempt over the cache, as upstream's `schedulePod`: pre-filter, try the
//! node a preemption nominated the pod to, else filter the nodes (starting where the last
//! attempt stopped, and stopping once enough feasible nodes are found: upstream's
//! `percentageOfNodesToScore` heuristic; pods nominated to a node count there for pods of
//! lower priority), score the feasible ones, pick the best (ties broken at random). When no
//! node fits, a [`FitError`] carries the per-node reasons, rendered as upstream's
//! `FailedScheduling` message.

use std::collections::BTreeMap;

use crate::cache::Cache;
use crate::framework::{Code, CycleState, Framework, PodInfo, Status};
use crate::plugins::image_locality::ImageSpread;
use crate::plugins::inter_pod_affinity::NamespaceLabelsState;

/// Below this many nodes every node is checked.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Why no node fits a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes there were.
    pub num_all_nodes: usize,
    /// A pre-filter's rejection, which applies to every node.
    pub pre_filter: Option<Status>,
    /// The failed status of each node that was checked, by node name.
    pub node_statuses: Vec<(String, Status)>,
    /// What preemption said (upstream's `PostFilterMsg`): None until it ran, then the text
    /// after the filter reasons (empty when it nominated a node).
    pub post_filter_msg: Option<String>,
}

/// `"3 Insufficient cpu"`-style counts, sorted as strings as upstream sorts them.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let n = self.num_all_nodes;
        write!(f, "0/{n} nodes are available:")?;
        if let Some(pre) = &self.pre_filter {
            write!(f, " {}.", pre.reasons.join(", "))?;
        } else {
            let filter = histogram(
                self.node_statuses
                    .iter()
                    .flat_map(|(_, s)| s.reasons.iter().map(String::as_str)),
            );
            if !filter.is_empty() {
                write!(f, " {filter}.")?;
            }
        }
        match self.post_filter_msg.as_deref() {
            Some("") => return Ok(()),
            Some(msg) => return write!(f, " preemption: {msg}"),
            None => {}
        }
        // Preemption found no victims (or did not run): which nodes it could have helped.
        let pre_code = self.pre_filter.as_ref().map(|s| s.code);
        let per_node: Vec<&str> = match pre_code {
            Some(_) => vec!["Preemption is not helpful for scheduling"; n],
            None => self
                .node_statuses
                .iter()
                .map(|(_, s)| match s.code {
                    Code::Unschedulable => "No preemption victims found for incoming pod",
                    _ => "Preemption is not helpful for scheduling",
                })
                .collect(),
        };
        write!(
            f,
            " preemption: 0/{n} nodes are available: {}.",
            histogram(per_node.into_iter())
        )
    }
}

/// How many feasible nodes to look for among `all` (upstream's `numFeasibleNodesToFind` with
/// the default adaptive percentage).
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let pct = 50usize
        .saturating_sub(all / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// A cycle state with what the plugins read besides the pod and nodes (namespace labels,
/// which nodes have which images).
pub fn new_cycle_state(cache: &Cache) -> CycleState {
    let mut state = CycleState::new();
    state.write(NamespaceLabelsState(cache.namespaces.clone()));
    state.write(ImageSpread {
        nodes_with_image: cache.nodes_with_image.clone(),
        num_nodes: cache.node_count(),
    });
    state.write(cache.affinity_totals);
    state
}

/// A cycle state after the pre-filters, None when one rejects the pod (for preemption).
pub fn pre_filtered_state(fwk: &Framework, cache: &Cache, pod: &PodInfo) -> Option<CycleState> {
    let mut state = new_cycle_state(cache);
    fwk.run_pre_filter(&mut state, pod, &cache.nodes)
        .is_success()
        .then_some(state)
}

/// The node the pod was nominated to by an earlier preemption, if any.
pub fn nominated_node<'a>(cache: &'a Cache, pod: &'a PodInfo) -> Option<&'a str> {
    cache.nominated_node(&pod.key).or_else(|| {
        pod.pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
    })
}

/// Picks a node for `pod`, or explains why none fits.
pub fn schedule_pod(fwk: &Framework, cache: &mut Cache, pod: &PodInfo) -> Result<String, FitError> {
    let num_all_nodes = cache.node_count();
    let fail = |pre_filter, node_statuses| FitError {
        num_all_nodes,
        pre_filter,
        node_statuses,
        post_filter_msg: None,
    };
    if num_all_nodes == 0 {
        return Err(fail(None, Vec::new()));
    }
    let mut state = new_cycle_state(cache);
    let pre = fwk.run_pre_filter(&mut state, pod, &cache.nodes);
    if !pre.is_success() {
        return Err(fail(Some(pre), Vec::new()));
    }
    // A preemptor tries the node its victims left first (upstream's evaluateNominatedNode).
    if let Some(n) = nominated_node(cache, pod).and_then(|n| cache.node(n))
        && n.node.is_some()
        && fwk.run_filter_with_nominated(&state, pod, n).is_success()
    {
        return Ok(n.name.clone());
    }
    let want = num_feasible_nodes_to_find(num_all_nodes);
    let len = cache.nodes.len();
    let start = cache.next_start % len.max(1);
    let mut feasible: Vec<usize> = Vec::new();
    let mut failed: Vec<(String, Status)> = Vec::new();
    let mut processed = 0;
    for i in 0..len {
        let idx = (start + i) % len;
        processed += 1;
        let n = &cache.nodes[idx];
        if n.node.is_none() {
            continue;
        }
        let s = fwk.run_filter_with_nominated(&state, pod, n);
        if s.is_success() {
            feasible.push(idx);
            if feasible.len() >= want {
                break;
            }
        } else {
            failed.push((n.name.clone(), s));
        }
    }
    cache.next_start = (start + processed) % len.max(1);
    match feasible.len() {
        0 => return Err(fail(None, failed)),
        1 => return Ok(cache.nodes[feasible[0]].name.clone()),
        _ => {}
    }
    let refs: Vec<_> = feasible.iter().map(|&i| &cache.nodes[i]).collect();
    let scores = fwk.run_score(&mut state, pod, &refs, &cache.nodes);
    // The best score; among equals, each is picked with equal probability (reservoir).
    let mut best = 0;
    let mut ties = 0u32;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rand::random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    Ok(refs[best].name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::testing::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn cache(nodes: &[serde_json::Value]) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            c.upsert_node(Arc::new(node(n.clone())));
        }
        c
    }

    fn schedule(nodes: &[serde_json::Value], spec: serde_json::Value) -> Result<String, String> {
        let mut c = cache(nodes);
        let p = PodInfo::new(Arc::new(pod(spec)));
        schedule_pod(&default_framework(), &mut c, &p).map_err(|e| e.to_string())
    }

    fn cpu(c: &str) -> serde_json::Value {
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": c}}}]})
    }

    #[test]
    fn messages() {
        let cp = json!({"name": "cp", "cpu": "8", "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]});
        let small = |n: &str| json!({"name": n, "cpu": "2"});
        assert_eq!(
            schedule(&[cp.clone(), small("a"), small("b")], cpu("4")),
            Err("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.".into())
        );
        assert_eq!(
            schedule(&[small("a")], json!({"nodeSelector": {"disk": "ssd"}})),
            Err("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into())
        );
        assert_eq!(
            schedule(&[small("a"), json!({"name": "c", "unschedulable": true})], json!({"nodeSelector": {"disk": "ssd"}})),
            Err("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.".into())
        );
        assert_eq!(
            schedule(&[], json!({})),
            Err("no nodes available to schedule pods".into())
        );
        let mut e = schedule_pod(
            &default_framework(),
            &mut cache(&[small("a")]),
            &PodInfo::new(Arc::new(pod(cpu("100")))),
        )
        .unwrap_err();
        e.post_filter_msg = Some("not eligible due to preemptionPolicy=Never.".into());
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
        e.post_filter_msg = Some(String::new());
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu."
        );
    }

    #[test]
    fn resolvable_failures_count_as_preemption_candidates() {
        let mut c = cache(&[json!({"name": "a", "cpu": "2"})]);
        c.add_or_update_pod(Arc::new(crate::testing::pod_named("x", json!({}), {
            let mut s = cpu("1500m");
            s["nodeName"] = json!("a");
            s
        })));
        let p = PodInfo::new(Arc::new(pod(cpu("1"))));
        let e = schedule_pod(&default_framework(), &mut c, &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn picks_the_best_node() {
        let nodes = [
            json!({"name": "a"}),
            json!({"name": "b", "labels": {"disk": "ssd"}}),
            json!({"name": "c"}),
        ];
        let spec = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}});
        for _ in 0..10 {
            assert_eq!(schedule(&nodes, spec.clone()), Ok("b".into()));
        }
        // PreferNoSchedule taints steer pods away.
        let nodes = [
            json!({"name": "a", "taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
            json!({"name": "b"}),
        ];
        for _ in 0..10 {
            assert_eq!(schedule(&nodes, json!({})), Ok("b".into()));
        }
    }

    #[test]
    fn spreads_by_least_allocated() {
        let mut c = cache(&[
            json!({"name": "a"}),
            json!({"name": "b"}),
            json!({"name": "c"}),
        ]);
        let fwk = default_framework();
        for i in 0..6 {
            let p = Arc::new(PodInfo::new(Arc::new(crate::testing::pod_named(
                &format!("p{i}"),
                json!({}),
                cpu("500m"),
            ))));
            let n = schedule_pod(&fwk, &mut c, &p).unwrap();
            c.assume(p, &n);
        }
        for n in ["a", "b", "c"] {
            assert_eq!(c.node(n).unwrap().pods.len(), 2, "node {n}");
        }
    }

    #[test]
    fn feasible_nodes_to_find() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(100), 100);
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
        assert_eq!(num_feasible_nodes_to_find(10000), 500);
    }
}
