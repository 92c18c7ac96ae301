//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in
//! similar proportions once the pod runs there.

use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, ScorePlugin};

/// The plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The NodeResourcesBalancedAllocation scorer.
pub struct NodeResourcesBalancedAllocation;

impl Plugin for NodeResourcesBalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn fraction(requested: i64, capacity: i64) -> f64 {
    if capacity <= 0 {
        return 1.0;
    }
    (requested as f64 / capacity as f64).min(1.0)
}

impl ScorePlugin for NodeResourcesBalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = fraction(
            node.requested.milli_cpu + pod.requests.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = fraction(
            node.requested.memory + pod.requests.memory,
            node.allocatable.memory,
        );
        // The standard deviation of two fractions is half their distance.
        let std = (cpu - mem).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::scores_with_pods;
    use serde_json::json;

    #[test]
    fn score() {
        let pod = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]});
        let cpu_heavy =
            [json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}]})];
        let nodes = [json!({"name": "a"}), json!({"name": "b"})];
        // a: 1/4 cpu, 2/8 memory: balanced. b: 4/4 cpu vs 2/8 memory: std 0.375.
        assert_eq!(
            scores_with_pods(
                &NodeResourcesBalancedAllocation,
                pod,
                &nodes,
                &[&[], &cpu_heavy]
            ),
            vec![100, 62]
        );
    }
}
