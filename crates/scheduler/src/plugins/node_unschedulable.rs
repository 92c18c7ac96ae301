//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};
use crate::plugins::taint_toleration::tolerates;

/// The plugin name.
pub const NAME: &str = "NodeUnschedulable";
/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) were unschedulable";
/// The taint a cordoned node is treated as having.
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// The NodeUnschedulable filter.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node.unschedulable;
        if !cordoned {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        if tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| tolerates(t, &taint))
        {
            return Status::success();
        }
        Status::unresolvable(NAME, ERR_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::filter_reason;
    use serde_json::json;

    #[test]
    fn filter() {
        let check = |spec, node, expect: Option<&str>| {
            assert_eq!(filter_reason(&NodeUnschedulable, spec, node), expect);
        };
        check(json!({}), json!({"name": "a"}), None);
        check(
            json!({}),
            json!({"name": "a", "unschedulable": true}),
            Some(ERR_REASON),
        );
        check(
            json!({"tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}),
            json!({"name": "a", "unschedulable": true}),
            None,
        );
        check(
            json!({"tolerations": [{"operator": "Exists"}]}),
            json!({"name": "a", "unschedulable": true}),
            None,
        );
    }
}
