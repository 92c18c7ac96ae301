//! DefaultPreemption: upstream's PostFilter plugin. When no node fits a pod and some nodes
//! failed only for reasons preemption can resolve (`Unschedulable`, not
//! `UnschedulableAndUnresolvable`), it looks for a node where evicting pods of lower priority
//! makes the pod fit, with as few and as unimportant victims as possible:
//!
//! 1. On each candidate node (a copy), remove every lower-priority pod; if the pod still does
//!    not fit, the node is no candidate.
//! 2. Reprieve victims, most important first (higher priority, then earlier start), pods whose
//!    eviction would violate a PodDisruptionBudget before the others: put each back and keep it
//!    if the pod still fits.
//! 3. Pick the node with the fewest PDB violations, then the lowest highest-victim priority,
//!    the smallest sum of victim priorities, the fewest victims, the latest start among the
//!    highest-priority victims, then the first found.
//!
//! This module only decides; the scheduler deletes the victims and nominates the node.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::cache::Cache;
use crate::framework::{
    Code, CycleState, Framework, NodeInfo, PodInfo, pod_labels, pod_namespace, selector_matches,
};
use crate::schedule_one::FitError;

/// The plugin name.
pub const NAME: &str = "DefaultPreemption";
/// Upstream's minimum share of nodes to dry-run, in percent.
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// Upstream's minimum number of nodes to dry-run.
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
/// Why a pod with `preemptionPolicy: Never` does not preempt.
pub const MSG_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
/// Why a pod whose earlier victims are still terminating does not preempt again.
pub const MSG_TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// A node and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The pods to evict, most important first.
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims' eviction violates a PodDisruptionBudget.
    pub num_pdb_violations: usize,
}

/// Whether the pod may preempt others (upstream's `PodEligibleToPreemptOthers`); the reason
/// when not. A pod already nominated to a node where lower-priority pods are terminating waits
/// for them instead of preempting again.
pub fn eligible(pod: &PodInfo, cache: &Cache, fit: &FitError) -> Result<(), &'static str> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err(MSG_NEVER);
    }
    let nominated = cache
        .nominated_node(&pod.key)
        .map(str::to_string)
        .or_else(|| {
            pod.pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty())
        });
    if let Some(name) = nominated {
        // The nominated node can no longer help: preempting elsewhere is fine.
        let unresolvable = fit
            .node_statuses
            .iter()
            .any(|(n, s)| *n == name && s.code == Code::UnschedulableAndUnresolvable);
        if !unresolvable
            && let Some(node) = cache.node(&name)
            && node
                .pods
                .iter()
                .any(|p| p.terminating() && p.priority < pod.priority)
        {
            return Err(MSG_TERMINATING);
        }
    }
    Ok(())
}

/// How many candidate nodes to dry-run among `n` (upstream's `GetOffsetAndNumCandidates`).
pub fn num_candidates(n: usize) -> usize {
    (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(n)
}

fn start_time(p: &PodInfo) -> jiff::Timestamp {
    // Upstream counts a pod that has not started as starting now.
    p.start_time().unwrap_or_else(jiff::Timestamp::now)
}

/// Splits `pods` (most important first) into those whose eviction violates a PDB and the
/// others, as upstream's `filterPodsWithPDBViolation`: each eviction uses up one of the
/// budget's `disruptionsAllowed`.
fn split_by_pdb(
    pods: Vec<Arc<PodInfo>>,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| p.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let labels = pod_labels(&p.pod);
        let name = p.pod.metadata.name.as_deref().unwrap_or("");
        let mut violated = false;
        if !labels.is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace.as_deref().unwrap_or("default") != pod_namespace(&p.pod) {
                    continue;
                }
                let sel = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                // A PDB with a missing or empty selector selects nothing here, as upstream.
                let empty = sel.is_none_or(|s| {
                    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                        && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
                });
                if empty || !selector_matches(sel, labels) {
                    continue;
                }
                // Already counted by the disruption controller.
                let disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(name));
                if disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

/// The victims on one node, or None when evicting every lower-priority pod does not help
/// (upstream's `SelectVictimsOnNode`).
pub fn select_victims_on_node(
    fwk: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Option<Candidate> {
    let mut state = state.clone();
    let mut ni = node.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    for v in &potential {
        ni.remove_pod(&v.key);
        fwk.run_remove_pod(&mut state, pod, v, &ni);
    }
    if !fwk.run_filter_with_nominated(&state, pod, &ni).is_success() {
        return None;
    }
    // Most important first.
    potential.sort_by_key(|p| (Reverse(p.priority), start_time(p)));
    let (violating, fine) = split_by_pdb(potential, pdbs);
    let mut victims = Vec::new();
    let mut num_pdb_violations = 0;
    let mut reprieve = |v: Arc<PodInfo>, state: &mut CycleState, ni: &mut NodeInfo| -> bool {
        ni.add_pod(v.clone());
        fwk.run_add_pod(state, pod, &v, ni);
        if fwk.run_filter_with_nominated(state, pod, ni).is_success() {
            return true;
        }
        ni.remove_pod(&v.key);
        fwk.run_remove_pod(state, pod, &v, ni);
        victims.push(v);
        false
    };
    for v in violating {
        if !reprieve(v, &mut state, &mut ni) {
            num_pdb_violations += 1;
        }
    }
    for v in fine {
        reprieve(v, &mut state, &mut ni);
    }
    Some(Candidate {
        node: node.name.clone(),
        victims,
        num_pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption` order: the smaller key wins.
fn rank(c: &Candidate) -> (usize, i32, i64, usize, Reverse<jiff::Timestamp>) {
    let highest = c
        .victims
        .iter()
        .map(|v| v.priority)
        .max()
        .unwrap_or(i32::MIN);
    // Shifted so negative priorities still add up to a larger sum for more victims.
    let sum: i64 = c
        .victims
        .iter()
        .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
        .sum();
    let earliest_of_highest = c
        .victims
        .iter()
        .filter(|v| v.priority == highest)
        .map(|v| start_time(v))
        .min()
        .unwrap_or_else(jiff::Timestamp::now);
    (
        c.num_pdb_violations,
        highest,
        sum,
        c.victims.len(),
        Reverse(earliest_of_highest),
    )
}

/// Picks the best candidate (the first among equals).
pub fn pick_one(candidates: Vec<Candidate>) -> Option<Candidate> {
    let mut best: Option<(Candidate, _)> = None;
    for c in candidates {
        let r = rank(&c);
        if best.as_ref().is_none_or(|(_, br)| r < *br) {
            best = Some((c, r));
        }
    }
    best.map(|(c, _)| c)
}

/// Dry-runs preemption for `pod` over the nodes where it might help (those that failed with
/// `Unschedulable` in `fit`), starting at a random offset and stopping after
/// [`num_candidates`] candidates, and picks the best.
pub fn find_candidate(
    fwk: &Framework,
    cache: &Cache,
    state: &CycleState,
    pod: &PodInfo,
    fit: &FitError,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Option<Candidate> {
    let potential: Vec<&NodeInfo> = fit
        .node_statuses
        .iter()
        .filter(|(_, s)| s.code == Code::Unschedulable)
        .filter_map(|(n, _)| cache.node(n))
        .filter(|n| n.node.is_some())
        .collect();
    if potential.is_empty() {
        return None;
    }
    let want = num_candidates(potential.len());
    let offset = rand::random_range(0..potential.len());
    let mut candidates = Vec::new();
    for i in 0..potential.len() {
        let node = potential[(offset + i) % potential.len()];
        if let Some(c) = select_victims_on_node(fwk, state, pod, node, pdbs) {
            candidates.push(c);
            if candidates.len() >= want {
                break;
            }
        }
    }
    pick_one(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::schedule_one::schedule_pod;
    use crate::testing::{node, pod_named};
    use serde_json::{Value, json};

    fn cpu_pod(name: &str, cpu: &str, priority: i32, extra: Value) -> Arc<PodInfo> {
        let mut spec = json!({"priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
        if let Some(o) = extra.as_object() {
            for (k, v) in o {
                spec[k] = v.clone();
            }
        }
        Arc::new(PodInfo::new(Arc::new(pod_named(
            name,
            json!({"app": name}),
            spec,
        ))))
    }

    fn started(mut p: PodInfo, at: &str) -> Arc<PodInfo> {
        let mut pod = (*p.pod).clone();
        pod.status.get_or_insert_default().start_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at.parse().unwrap()),
        );
        p.pod = Arc::new(pod);
        Arc::new(p)
    }

    /// A cache of nodes (name, cpu) with pods assumed onto them.
    fn cluster(nodes: &[(&str, &str)], pods: &[(&str, Arc<PodInfo>)]) -> Cache {
        let mut c = Cache::new();
        for (n, cpu) in nodes {
            c.upsert_node(Arc::new(node(json!({"name": n, "cpu": cpu}))));
        }
        for (n, p) in pods {
            c.assume(p.clone(), n);
        }
        c
    }

    fn preempt(c: &mut Cache, p: &PodInfo, pdbs: &[Arc<PodDisruptionBudget>]) -> Option<Candidate> {
        let fwk = default_framework();
        let fit = schedule_pod(&fwk, c, p).expect_err("the pod should not fit");
        eligible(p, c, &fit).ok()?;
        let state = crate::schedule_one::pre_filtered_state(&fwk, c, p)?;
        find_candidate(&fwk, c, &state, p, &fit, pdbs)
    }

    fn names(c: &Candidate) -> Vec<&str> {
        c.victims
            .iter()
            .map(|v| v.pod.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn evicts_only_what_is_needed() {
        // 2 CPU: low1 (1 CPU, prio 1), low0 (500m, prio 0), mid (500m, prio 5).
        let mut c = cluster(
            &[("a", "2")],
            &[
                ("a", cpu_pod("low1", "1", 1, json!({}))),
                ("a", cpu_pod("low0", "500m", 0, json!({}))),
                ("a", cpu_pod("mid", "500m", 5, json!({}))),
            ],
        );
        // Removing all three frees 2 CPU; reprieved most important first: mid back (1.5
        // free), low1 back would leave 0.5 (victim), low0 back leaves 1 (stays).
        let high = cpu_pod("high", "1", 10, json!({}));
        let cand = preempt(&mut c, &high, &[]).unwrap();
        assert_eq!(cand.node, "a");
        assert_eq!(names(&cand), ["low1"]);
        // Equal or higher priority pods are never victims.
        let peer = cpu_pod("peer", "500m", 1, json!({}));
        let cand = preempt(&mut c, &peer, &[]).unwrap();
        assert_eq!(names(&cand), ["low0"]);
        assert!(preempt(&mut c, &cpu_pod("peer", "1", 1, json!({})), &[]).is_none());
        let lowest = cpu_pod("lowest", "1", 0, json!({}));
        assert!(preempt(&mut c, &lowest, &[]).is_none());
    }

    #[test]
    fn never_policy_and_unresolvable_failures() {
        let mut c = cluster(&[("a", "2")], &[("a", cpu_pod("low", "2", 0, json!({})))]);
        let never = cpu_pod("never", "1", 10, json!({"preemptionPolicy": "Never"}));
        let fwk = default_framework();
        let fit = schedule_pod(&fwk, &mut c, &never).unwrap_err();
        assert_eq!(eligible(&never, &c, &fit), Err(MSG_NEVER));
        // More than the node has at all: preemption cannot help.
        let huge = cpu_pod("huge", "3", 10, json!({}));
        assert!(preempt(&mut c, &huge, &[]).is_none());
    }

    #[test]
    fn picks_the_node_with_the_least_important_victims() {
        let mut c = cluster(
            &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")],
            &[
                ("a", cpu_pod("a-prio5", "1", 5, json!({}))),
                ("b", cpu_pod("b-prio3", "1", 3, json!({}))),
                // c: two pods whose highest priority is 3 too, but a larger sum.
                ("c", cpu_pod("c-prio3", "500m", 3, json!({}))),
                ("c", cpu_pod("c-prio2", "500m", 2, json!({}))),
                ("d", cpu_pod("d-prio20", "1", 20, json!({}))),
            ],
        );
        let high = cpu_pod("high", "1", 10, json!({}));
        for _ in 0..5 {
            let cand = preempt(&mut c, &high, &[]).unwrap();
            assert_eq!((cand.node.as_str(), names(&cand)), ("b", vec!["b-prio3"]));
        }
    }

    #[test]
    fn latest_start_breaks_ties() {
        let early = started(
            (*cpu_pod("early", "1", 1, json!({}))).clone(),
            "2026-01-01T00:00:00Z",
        );
        let late = started(
            (*cpu_pod("late", "1", 1, json!({}))).clone(),
            "2026-01-02T00:00:00Z",
        );
        let mut c = cluster(&[("a", "1"), ("b", "1")], &[("a", early), ("b", late)]);
        let high = cpu_pod("high", "1", 10, json!({}));
        for _ in 0..5 {
            assert_eq!(preempt(&mut c, &high, &[]).unwrap().node, "b");
        }
    }

    #[test]
    fn pdb_violations_weigh_first() {
        let mut c = cluster(
            &[("a", "1"), ("b", "1")],
            &[
                ("a", cpu_pod("guarded", "1", 1, json!({}))),
                ("b", cpu_pod("free", "1", 5, json!({}))),
            ],
        );
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "g", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1,
                       "expectedPods": 1}}))
        .unwrap();
        let high = cpu_pod("high", "1", 10, json!({}));
        // Without the PDB the lower-priority victim wins; with it, the other node.
        assert_eq!(preempt(&mut c, &high, &[]).unwrap().node, "a");
        let cand = preempt(&mut c, &high, &[Arc::new(pdb)]).unwrap();
        assert_eq!((cand.node.as_str(), cand.num_pdb_violations), ("b", 0));
    }

    #[test]
    fn nominated_pods_keep_their_space() {
        let mut c = cluster(&[("a", "2")], &[("a", cpu_pod("low", "1", 0, json!({})))]);
        let high = cpu_pod("high", "1500m", 10, json!({}));
        c.nominate(high.clone(), "a");
        let fwk = default_framework();
        // 1 CPU is free, but a 1-CPU pod of lower priority must leave it to the nominee.
        let mid = cpu_pod("mid", "1", 5, json!({}));
        assert!(schedule_pod(&fwk, &mut c, &mid).is_err());
        // A pod of higher priority than the nominee does not see the nomination.
        let top = cpu_pod("top", "1", 20, json!({}));
        assert_eq!(schedule_pod(&fwk, &mut c, &top).unwrap(), "a");
        // While low is terminating, high does not preempt again.
        let mut low = (*cpu_pod("low", "1", 0, json!({}))).clone();
        let mut lp = (*low.pod).clone();
        lp.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        low.pod = Arc::new(lp);
        c.remove_pod("default/low");
        c.assume(Arc::new(low), "a");
        let big = cpu_pod("high", "1500m", 10, json!({}));
        let fit = schedule_pod(&fwk, &mut c, &big).unwrap_err();
        assert_eq!(eligible(&big, &c, &fit), Err(MSG_TERMINATING));
    }
}
