//! TaintToleration: a node's `NoSchedule` / `NoExecute` taints keep off pods that do not
//! tolerate them (filter); intolerable `PreferNoSchedule` taints lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, ScorePlugin, Status,
    default_normalize_score,
};

/// The plugin name.
pub const NAME: &str = "TaintToleration";

/// The TaintToleration filter and scorer.
pub struct TaintToleration;

/// Whether `t` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // An empty key with Exists matches every taint.
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.taints()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let tols = tolerations(pod);
        let untolerated = taints(node).iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tols.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Status::success(),
            Some(taint) => Status::unresolvable(
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                ),
            ),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if !node.tainted {
            return 0;
        }
        // Only tolerations that apply to PreferNoSchedule count here, as upstream.
        let tols: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .collect();
        taints(node)
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule" && !tols.iter().any(|t| tolerates(t, taint))
            })
            .count() as i64
    }

    fn normalize_score(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter_reason, scores};
    use serde_json::json;

    #[test]
    fn filter() {
        let cp = json!({"name": "a", "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]});
        let check = |spec, node: &serde_json::Value, expect: Option<&str>| {
            assert_eq!(filter_reason(&TaintToleration, spec, node.clone()), expect);
        };
        check(json!({}), &json!({"name": "a"}), None);
        check(
            json!({}),
            &cp,
            Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
        );
        check(
            json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}),
            &cp,
            None,
        );
        check(
            json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoExecute"}]}),
            &cp,
            Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
        );
        let kv = json!({"name": "a", "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]});
        check(
            json!({"tolerations": [{"key": "dedicated", "value": "gpu"}]}),
            &kv,
            None,
        );
        check(
            json!({"tolerations": [{"key": "dedicated", "value": "cpu"}]}),
            &kv,
            Some("node(s) had untolerated taint {dedicated: gpu}"),
        );
        check(json!({"tolerations": [{"operator": "Exists"}]}), &kv, None);
        // PreferNoSchedule never filters.
        check(
            json!({}),
            &json!({"name": "a", "taints": [{"key": "k", "effect": "PreferNoSchedule"}]}),
            None,
        );
    }

    #[test]
    fn score() {
        let nodes = [
            json!({"name": "clean"}),
            json!({"name": "one", "taints": [{"key": "a", "effect": "PreferNoSchedule"}]}),
            json!({"name": "two", "taints": [{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}),
        ];
        assert_eq!(
            scores(&TaintToleration, json!({}), &nodes),
            vec![100, 50, 0]
        );
        assert_eq!(
            scores(
                &TaintToleration,
                json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
                &nodes
            ),
            vec![100, 100, 0]
        );
    }
}
