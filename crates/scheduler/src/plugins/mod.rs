//! The in-tree plugins, one per file, named as upstream's, and the default profile: which
//! plugins run, in which order, with which score weights (upstream's defaults).

pub mod default_preemption;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_resources_balanced_allocation;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::Framework;

/// Upstream's default profile: filters in upstream's order; scores with upstream's weights
/// (TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1, ImageLocality 1).
pub fn default_framework() -> Framework {
    let taint = Arc::new(taint_toleration::TaintToleration);
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit);
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity);
    Framework {
        filters: vec![
            Arc::new(node_unschedulable::NodeUnschedulable),
            Arc::new(node_name::NodeName),
            taint.clone(),
            affinity.clone(),
            fit.clone(),
            inter_pod.clone(),
            spread.clone(),
        ],
        scorers: vec![
            (taint, 3),
            (affinity, 2),
            (spread, 2),
            (inter_pod, 2),
            (fit, 1),
            (
                Arc::new(node_resources_balanced_allocation::NodeResourcesBalancedAllocation),
                1,
            ),
            (Arc::new(image_locality::ImageLocality), 1),
        ],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Data-driven helpers: run one plugin over nodes and pods given as JSON.

    use std::sync::Arc;

    use serde_json::Value;

    use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status};
    use crate::testing::{node, pod, pod_named};

    fn node_info(n: Value, pods: &[(Value, Value)]) -> NodeInfo {
        let mut ni = NodeInfo::new(Arc::new(node(n)));
        for (i, (labels, spec)) in pods.iter().enumerate() {
            let name = format!("{}-{i}", ni.name);
            ni.add_pod(Arc::new(PodInfo::new(Arc::new(pod_named(
                &name,
                labels.clone(),
                spec.clone(),
            )))));
        }
        ni
    }

    /// The filter status of a pod with `spec` on `n` with pods of `existing` specs.
    pub fn filter_status(
        p: &dyn FilterPlugin,
        spec: Value,
        n: Value,
        existing: &[Value],
    ) -> Status {
        let ex: Vec<(Value, Value)> = existing
            .iter()
            .map(|s| (serde_json::json!({}), s.clone()))
            .collect();
        let ni = node_info(n, &ex);
        let pi = PodInfo::new(Arc::new(pod(spec)));
        let mut state = CycleState::new();
        let pre = p.pre_filter(&mut state, &pi, std::slice::from_ref(&ni));
        if !pre.is_success() {
            return pre;
        }
        p.filter(&state, &pi, &ni)
    }

    /// The first filter reason, None when the pod fits.
    pub fn filter_reason(p: &dyn FilterPlugin, spec: Value, n: Value) -> Option<&'static str> {
        let s = filter_status(p, spec, n, &[]);
        s.reasons
            .first()
            .map(|r| &*Box::leak(r.clone().into_boxed_str()))
    }

    /// The first filter reason per node for a pod with labels and spec; `on[i]` are the
    /// (labels, spec) of pods already on `nodes[i]`.
    pub fn filter_with_named_pods<const N: usize>(
        p: &dyn FilterPlugin,
        labels: Value,
        spec: Value,
        nodes: &[Value; N],
        on: &[&[(Value, Value)]; N],
    ) -> [Option<&'static str>; N] {
        let infos: Vec<NodeInfo> = nodes
            .iter()
            .zip(on)
            .map(|(n, ps)| node_info(n.clone(), ps))
            .collect();
        let pi = PodInfo::new(Arc::new(pod_named("incoming", labels, spec)));
        let mut state = CycleState::new();
        assert!(p.pre_filter(&mut state, &pi, &infos).is_success());
        std::array::from_fn(|i| {
            p.filter(&state, &pi, &infos[i])
                .reasons
                .first()
                .map(|r| &*Box::leak(r.clone().into_boxed_str()))
        })
    }

    /// Normalized scores of a pod with `spec` over empty `nodes`.
    pub fn scores(p: &dyn ScorePlugin, spec: Value, nodes: &[Value]) -> Vec<i64> {
        let empty: Vec<&[Value]> = nodes.iter().map(|_| &[][..]).collect();
        scores_with_pods(p, spec, nodes, &empty)
    }

    /// Normalized scores with pods of the given specs already on each node.
    pub fn scores_with_pods(
        p: &dyn ScorePlugin,
        spec: Value,
        nodes: &[Value],
        existing: &[&[Value]],
    ) -> Vec<i64> {
        let infos: Vec<NodeInfo> = nodes
            .iter()
            .zip(existing)
            .map(|(n, ex)| {
                let ex: Vec<(Value, Value)> = ex
                    .iter()
                    .map(|s| (serde_json::json!({}), s.clone()))
                    .collect();
                node_info(n.clone(), &ex)
            })
            .collect();
        let refs: Vec<&NodeInfo> = infos.iter().collect();
        let pi = PodInfo::new(Arc::new(pod(spec)));
        let mut state = CycleState::new();
        p.pre_score(&mut state, &pi, &refs, &infos);
        let mut s: Vec<i64> = refs.iter().map(|n| p.score(&state, &pi, n)).collect();
        p.normalize_score(&state, &pi, &mut s);
        s
    }
}
