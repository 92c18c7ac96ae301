//! PodTopologySpread: `topologySpreadConstraints`. Hard constraints (`whenUnsatisfiable:
//! DoNotSchedule`) filter nodes whose domain would exceed `maxSkew` over the least-loaded
//! domain; soft ones (`ScheduleAnyway`) score nodes by how many matching pods their domains
//! already hold. Counts per domain are computed once per attempt from the cached pods.
//!
//! As upstream: only nodes that pass the pod's nodeSelector/required node affinity count as
//! domains (`nodeAffinityPolicy: Honor`, the default; `Ignore` counts all), taints are ignored
//! (`nodeTaintsPolicy: Ignore`), `minDomains` raises the skew when fewer domains exist,
//! `matchLabelKeys` adds the incoming pod's values to the selector, and terminating pods are
//! not counted. Not done: the cluster-level default constraints upstream applies to pods of
//! Services and ReplicaSets that declare none.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::inter_pod_affinity::selector_matches;
use super::node_affinity::NodeAffinity;
use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, ScorePlugin, Status,
};

/// The plugin name.
pub const NAME: &str = "PodTopologySpread";
/// Upstream's reason when the skew would be exceeded.
pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
/// Upstream's reason when the node lacks a constraint's topology key.
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The PodTopologySpread plugin.
pub struct PodTopologySpread;

/// One constraint, with its selector completed by `matchLabelKeys`.
#[derive(Clone)]
struct Constraint {
    max_skew: i64,
    key: String,
    /// A missing selector matches no pod, as upstream.
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_node_affinity: bool,
    /// Matching pods per domain value.
    counts: HashMap<String, i64>,
}

impl Constraint {
    fn new(c: &TopologySpreadConstraint, pod: &PodInfo) -> Constraint {
        let mut selector = c.label_selector.clone();
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        for key in c.match_label_keys.iter().flatten() {
            if let (Some(v), Some(selector)) = (labels.get(key), selector.as_mut()) {
                selector
                    .match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: key.clone(),
                        operator: "In".into(),
                        values: Some(vec![v.clone()]),
                    });
            }
        }
        Constraint {
            max_skew: i64::from(c.max_skew),
            key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from).unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            counts: HashMap::new(),
        }
    }

    /// The node's domain, if it has one and counts for this constraint.
    fn domain<'a>(&self, pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a String> {
        let domain = node.labels().and_then(|l| l.get(&self.key))?;
        if self.honor_node_affinity
            && !NodeAffinity
                .filter(&CycleState::new(), pod, node)
                .is_success()
        {
            return None;
        }
        Some(domain)
    }

    /// Whether `other` counts as a matching pod for the incoming `pod`.
    fn counts_pod(&self, pod: &PodInfo, other: &PodInfo) -> bool {
        let ns = pod.pod.metadata.namespace.as_deref().unwrap_or("default");
        let empty = BTreeMap::new();
        !other.terminating()
            && other.pod.metadata.namespace.as_deref().unwrap_or("default") == ns
            && selector_matches(
                self.selector.as_ref(),
                other.pod.metadata.labels.as_ref().unwrap_or(&empty),
            )
    }

    /// Counts the matching pods of every eligible node's domain.
    fn count(&mut self, pod: &PodInfo, nodes: &[&NodeInfo]) {
        for node in nodes {
            let Some(domain) = self.domain(pod, node) else {
                continue;
            };
            let matching = node.pods.iter().filter(|p| self.counts_pod(pod, p)).count() as i64;
            *self.counts.entry(domain.clone()).or_default() += matching;
        }
    }

    /// Adds `delta` for `other` on `node` when it counts.
    fn update(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if !self.counts_pod(pod, other) {
            return;
        }
        if let Some(domain) = self.domain(pod, node) {
            *self.counts.entry(domain.clone()).or_default() += delta;
        }
    }

    /// The least count over domains (0 when fewer domains than `minDomains` exist).
    fn min_count(&self) -> i64 {
        if (self.counts.len() as i64) < self.min_domains {
            return 0;
        }
        self.counts.values().copied().min().unwrap_or(0)
    }

    fn selects(&self, pod: &PodInfo) -> bool {
        let empty = BTreeMap::new();
        selector_matches(
            self.selector.as_ref(),
            pod.pod.metadata.labels.as_ref().unwrap_or(&empty),
        )
    }
}

/// The constraints of one kind (`DoNotSchedule` or `ScheduleAnyway`) with their counts.
#[derive(Clone)]
struct Constraints(Vec<Constraint>);

/// Hard constraints, kept for the filter.
#[derive(Clone)]
struct FilterState(Constraints);
/// Soft constraints, kept for scoring.
#[derive(Clone)]
struct ScoreState(Constraints);

fn constraints(pod: &PodInfo, when: &str, nodes: &[&NodeInfo]) -> Constraints {
    let spec_constraints = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref());
    Constraints(
        spec_constraints
            .into_iter()
            .flatten()
            .filter(|c| c.when_unsatisfiable == when)
            .map(|c| {
                let mut c = Constraint::new(c, pod);
                c.count(pod, nodes);
                c
            })
            .collect(),
    )
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status {
        let has_constraints = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        if !has_constraints {
            // Most pods: nothing to count (the filter passes without a state).
            return Status::success();
        }
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        state.write(FilterState(constraints(pod, "DoNotSchedule", &refs)));
        Status::success()
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo) {
        if let Some(FilterState(Constraints(cs))) = state.read_mut::<FilterState>() {
            cs.iter_mut().for_each(|c| c.update(pod, added, node, 1));
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
    ) {
        if let Some(FilterState(Constraints(cs))) = state.read_mut::<FilterState>() {
            cs.iter_mut().for_each(|c| c.update(pod, removed, node, -1));
        }
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(FilterState(Constraints(cs))) = state.read::<FilterState>() else {
            return Status::success();
        };
        for c in cs {
            let Some(domain) = node.labels().and_then(|l| l.get(&c.key)) else {
                return Status::unresolvable(NAME, ERR_MISSING_LABEL);
            };
            let here = c.counts.get(domain).copied().unwrap_or(0);
            let own = i64::from(c.selects(pod));
            if here + own - c.min_count() > c.max_skew {
                return Status::unschedulable(NAME, ERR_CONSTRAINTS);
            }
        }
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        _all_nodes: &[NodeInfo],
    ) {
        state.write(ScoreState(constraints(pod, "ScheduleAnyway", nodes)));
    }

    /// Raw score: matching pods in the node's domains, each constraint weighted by
    /// log(domains + 2) as upstream, so spreading over many domains weighs more.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(ScoreState(Constraints(cs))) = state.read::<ScoreState>() else {
            return 0;
        };
        let mut total = 0.0;
        for c in cs {
            let Some(domain) = node.labels().and_then(|l| l.get(&c.key)) else {
                // Upstream skips nodes without the key when scoring; worst score here.
                return i64::MAX;
            };
            let weight = ((c.counts.len() + 2) as f64).ln();
            let count = c.counts.get(domain).copied().unwrap_or(0) as f64;
            total += (count + (c.max_skew - 1) as f64) * weight;
        }
        total.round() as i64
    }

    /// Fewer matching pods is better: the least-loaded node gets 100.
    fn normalize_score(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let has_constraints = state
            .read::<ScoreState>()
            .is_some_and(|ScoreState(Constraints(cs))| !cs.is_empty());
        if !has_constraints {
            return;
        }
        let valid = scores.iter().copied().filter(|s| *s != i64::MAX);
        let (min, max) = valid.fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s == i64::MAX {
                0
            } else if max == 0 || max == min {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::tests::{filter_with_named_pods, scores_with_pods};

    fn zone_node(name: &str, zone: &str) -> serde_json::Value {
        json!({"name": name, "labels": {"zone": zone}})
    }

    fn spread(when: &str) -> serde_json::Value {
        json!({"containers": [{"name": "c"}], "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}
        }]})
    }

    #[test]
    fn hard_constraint_filters_the_crowded_zone_and_unlabelled_nodes() {
        let web = (
            json!({"app": "web"}),
            json!({"containers": [{"name": "c"}]}),
        );
        let other = (json!({"app": "db"}), json!({"containers": [{"name": "c"}]}));
        let got = filter_with_named_pods(
            &PodTopologySpread,
            json!({"app": "web"}),
            spread("DoNotSchedule"),
            &[
                zone_node("a", "z1"),
                zone_node("b", "z2"),
                json!({"name": "c"}),
            ],
            &[&[web.clone(), other.clone()], &[other], &[]],
        );
        assert_eq!(got, [Some(ERR_CONSTRAINTS), None, Some(ERR_MISSING_LABEL)]);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let web = (
            json!({"app": "web"}),
            json!({"containers": [{"name": "c"}]}),
        );
        let mut spec = spread("DoNotSchedule");
        spec["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let got = filter_with_named_pods(
            &PodTopologySpread,
            json!({"app": "web"}),
            spec,
            &[zone_node("a", "z1"), zone_node("b", "z2")],
            &[std::slice::from_ref(&web), std::slice::from_ref(&web)],
        );
        // Two domains with one pod each, but three are wanted: the global minimum is 0.
        assert_eq!(got, [Some(ERR_CONSTRAINTS), Some(ERR_CONSTRAINTS)]);
    }

    #[test]
    fn soft_constraint_prefers_the_emptier_zone() {
        let web = json!({"containers": [{"name": "c"}]});
        // scores_with_pods gives existing pods no labels, so make the selector match all.
        let mut spec = spread("ScheduleAnyway");
        spec["topologySpreadConstraints"][0]["labelSelector"] = json!({});
        let s = scores_with_pods(
            &PodTopologySpread,
            spec,
            &[zone_node("a", "z1"), zone_node("b", "z2")],
            &[&[web.clone(), web.clone()], &[]],
        );
        assert!(s[1] > s[0], "{s:?}");
        assert_eq!(s[1], MAX_NODE_SCORE);
    }
}
