//! NodeAffinity: `spec.nodeSelector` and the required node affinity terms filter nodes; the
//! preferred terms' weights score them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, ScorePlugin, Status,
    default_normalize_score,
};

/// The plugin name.
pub const NAME: &str = "NodeAffinity";
/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// The NodeAffinity filter and scorer.
pub struct NodeAffinity;

/// Whether a requirement holds for a node's labels (upstream's selector operators).
pub fn match_requirement(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let v = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => v.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [want]) = (v, values) else {
                return false;
            };
            let (Ok(have), Ok(want)) = (v.parse::<i64>(), want.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether one term (all its expressions and fields) matches; an empty term matches nothing.
pub fn match_term(
    t: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let mut name = BTreeMap::new();
    name.insert("metadata.name".to_string(), node_name.to_string());
    exprs.iter().all(|r| match_requirement(r, labels))
        && fields.iter().all(|r| match_requirement(r, &name))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(spec) = &pod.pod.spec else {
            return Status::success();
        };
        let empty = BTreeMap::new();
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        if spec.node_selector.is_none() && required.is_none() {
            // Most pods: no need to look at the node's labels.
            return Status::success();
        }
        let labels = node.labels().unwrap_or(&empty);
        if let Some(sel) = &spec.node_selector
            && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            return Status::unresolvable(NAME, ERR_REASON);
        }
        if let Some(req) = required
            && !req
                .node_selector_terms
                .iter()
                .any(|t| match_term(t, &node.name, labels))
        {
            return Status::unresolvable(NAME, ERR_REASON);
        }
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let preferred = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let Some(preferred) = preferred else {
            return 0;
        };
        let empty = BTreeMap::new();
        let labels = node.labels().unwrap_or(&empty);
        preferred
            .iter()
            .filter(|p| p.weight != 0 && match_term(&p.preference, &node.name, labels))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize_score(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter_reason, scores};
    use serde_json::json;

    fn required(exprs: serde_json::Value) -> serde_json::Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
    }

    #[test]
    fn filter() {
        let ssd = json!({"name": "a", "labels": {"disk": "ssd", "gen": "5"}});
        let plain = json!({"name": "b"});
        let check = |spec: serde_json::Value, node: &serde_json::Value, fits: bool| {
            let got = filter_reason(&NodeAffinity, spec.clone(), node.clone());
            assert_eq!(got, (!fits).then_some(ERR_REASON), "{spec} on {node}");
        };
        check(json!({"nodeSelector": {"disk": "ssd"}}), &ssd, true);
        check(json!({"nodeSelector": {"disk": "ssd"}}), &plain, false);
        check(
            required(json!([{"key": "disk", "operator": "In", "values": ["ssd"]}])),
            &ssd,
            true,
        );
        check(
            required(json!([{"key": "disk", "operator": "In", "values": ["ssd"]}])),
            &plain,
            false,
        );
        check(
            required(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])),
            &ssd,
            false,
        );
        check(
            required(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])),
            &plain,
            true,
        );
        check(
            required(json!([{"key": "disk", "operator": "Exists"}])),
            &ssd,
            true,
        );
        check(
            required(json!([{"key": "disk", "operator": "Exists"}])),
            &plain,
            false,
        );
        check(
            required(json!([{"key": "disk", "operator": "DoesNotExist"}])),
            &plain,
            true,
        );
        check(
            required(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
            &ssd,
            true,
        );
        check(
            required(json!([{"key": "gen", "operator": "Gt", "values": ["5"]}])),
            &ssd,
            false,
        );
        check(
            required(json!([{"key": "gen", "operator": "Lt", "values": ["6"]}])),
            &ssd,
            true,
        );
        check(
            required(json!([{"key": "gen", "operator": "Lt", "values": ["6"]}])),
            &plain,
            false,
        );
        // Terms are ORed; expressions within a term ANDed.
        check(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}),
            &plain,
            true,
        );
        check(
            required(json!([{"key": "disk", "operator": "In", "values": ["ssd"]},
                              {"key": "gen", "operator": "In", "values": ["4"]}])),
            &ssd,
            false,
        );
    }

    #[test]
    fn score() {
        let spec = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "memory", "operator": "In", "values": ["high", "medium"]}]}},
            {"weight": 3, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}}]}}});
        let nodes = [
            json!({"name": "x"}),
            json!({"name": "y", "labels": {"memory": "high"}}),
            json!({"name": "z", "labels": {"memory": "medium", "zone": "a"}}),
        ];
        assert_eq!(scores(&NodeAffinity, spec, &nodes), vec![0, 25, 100]);
    }
}
