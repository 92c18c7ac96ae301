//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

/// The plugin name.
pub const NAME: &str = "NodeName";
/// Upstream's reason.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName filter.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name => {
                Status::unresolvable(NAME, ERR_REASON)
            }
            _ => Status::success(),
        }
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
            assert_eq!(
                filter_reason(&NodeName, spec, json!({"name": node})),
                expect
            );
        };
        check(json!({}), "a", None);
        check(json!({"nodeName": "a"}), "a", None);
        check(json!({"nodeName": "a"}), "b", Some(ERR_REASON));
    }
}
