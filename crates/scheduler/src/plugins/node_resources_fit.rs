//! NodeResourcesFit: the pod's cpu, memory and pod-count requests must fit the node's
//! allocatable minus what its pods already request (filter); the score prefers the least
//! allocated nodes (upstream's default `LeastAllocated` scoring strategy).

use crate::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, ScorePlugin, Status,
};

/// The plugin name.
pub const NAME: &str = "NodeResourcesFit";

/// The NodeResourcesFit filter and scorer.
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let (alloc, used, want) = (&node.allocatable, &node.requested, &pod.requests);
        // (reason, unresolvable: more than the node has at all, so preemption cannot help)
        let mut failures: Vec<(&str, bool)> = Vec::new();
        if used.pods + 1 > alloc.pods {
            failures.push(("Too many pods", false));
        }
        if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
            failures.push(("Insufficient cpu", want.milli_cpu > alloc.milli_cpu));
        }
        if want.memory > 0 && want.memory > alloc.memory - used.memory {
            failures.push(("Insufficient memory", want.memory > alloc.memory));
        }
        if failures.is_empty() {
            return Status::success();
        }
        let code = if failures.iter().all(|(_, u)| *u) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::new(
            code,
            NAME,
            failures.into_iter().map(|(r, _)| r.to_string()).collect(),
        )
    }
}

/// `(capacity - requested) / capacity` in 0–100; 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_requested(
            node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
            node.allocatable.milli_cpu,
        );
        let mem = least_requested(
            node.non_zero_requested.memory + pod.non_zero_requests.memory,
            node.allocatable.memory,
        );
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::tests::{filter_status, scores_with_pods};
    use serde_json::json;

    fn req(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]})
    }

    #[test]
    fn filter() {
        let check = |spec, node, existing: &[serde_json::Value], expect: (Code, &[&str])| {
            let s = filter_status(&NodeResourcesFit, spec, node, existing);
            let reasons: Vec<&str> = s.reasons.iter().map(String::as_str).collect();
            assert_eq!((s.code, reasons.as_slice()), expect);
        };
        let node = json!({"name": "n", "cpu": "4", "memory": "8Gi", "pods": "2"});
        check(req("1", "1Gi"), node.clone(), &[], (Code::Success, &[]));
        check(
            req("100", "1Gi"),
            node.clone(),
            &[],
            (Code::UnschedulableAndUnresolvable, &["Insufficient cpu"]),
        );
        check(
            req("3", "1Gi"),
            node.clone(),
            &[req("2", "0")],
            (Code::Unschedulable, &["Insufficient cpu"]),
        );
        check(
            req("1", "7Gi"),
            node.clone(),
            &[req("0.5", "2Gi")],
            (Code::Unschedulable, &["Insufficient memory"]),
        );
        check(
            req("1", "1Gi"),
            node.clone(),
            &[req("0", "0"), req("0", "0")],
            (Code::Unschedulable, &["Too many pods"]),
        );
        check(
            req("5", "9Gi"),
            node.clone(),
            &[],
            (
                Code::UnschedulableAndUnresolvable,
                &["Insufficient cpu", "Insufficient memory"],
            ),
        );
        check(
            req("5", "1Gi"),
            node.clone(),
            &[req("0", "0"), req("0", "0")],
            (Code::Unschedulable, &["Too many pods", "Insufficient cpu"]),
        );
        // Requests of init containers count (max of init vs the app sum).
        check(
            json!({"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "4500m"}}}],
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
            node.clone(),
            &[],
            (Code::UnschedulableAndUnresolvable, &["Insufficient cpu"]),
        );
        // Zero requests always fit resource-wise.
        check(json!({}), node, &[req("4", "8Gi")], (Code::Success, &[]));
    }

    #[test]
    fn score_least_allocated() {
        let nodes = [json!({"name": "empty"}), json!({"name": "busy"})];
        let busy = [req("3", "6Gi")];
        let got = scores_with_pods(&NodeResourcesFit, req("1", "2Gi"), &nodes, &[&[], &busy]);
        // empty: cpu (4-1)/4=75, mem (8-2)/8=75; busy: cpu 0, mem 0.
        assert_eq!(got, vec![75, 0]);
    }
}
