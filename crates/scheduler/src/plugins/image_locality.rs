//! ImageLocality: prefers nodes that already have the pod's container images
//! (`node.status.images`), so the pod starts without a pull. As upstream: each image present
//! on the node adds its size scaled by the share of nodes that have it (an image every node
//! has says little about this one), and the sum is mapped to 0–100 between 23 MiB and
//! 1000 MiB per container.
//!
//! Image names are compared in their normalized form, so `busybox`,
//! `library/busybox:latest` and `docker.io/library/busybox:latest` are one image.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, ScorePlugin};

/// The plugin name.
pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
/// Below this the score is 0 (upstream's `minThreshold`).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this the score is 100 (upstream's `maxContainerThreshold`).
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality scorer.
pub struct ImageLocality;

/// How many nodes have each image (normalized name), and how many nodes there are: written
/// into the cycle state by the scheduler.
#[derive(Clone, Default)]
pub struct ImageSpread {
    /// Nodes having each image.
    pub nodes_with_image: Arc<HashMap<String, usize>>,
    /// All nodes.
    pub num_nodes: usize,
}

/// The image reference in full: registry (`docker.io` when none is given), `library/` for
/// Docker Hub's official images, and the `latest` tag when neither a tag nor a digest is given.
pub fn normalized_image_name(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    let has_domain = rest.is_some() && (first.contains(['.', ':']) || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if rest.is_some() {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if full.starts_with("index.docker.io/") {
        full.replace_range(..5, "");
    }
    if full.starts_with("docker.io/") && full["docker.io/".len()..].split('/').count() == 1 {
        full.insert_str("docker.io/".len(), "library/");
    }
    let last = full.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        full.push_str(":latest");
    }
    full
}

/// The pod's image names (init containers included), normalized.
fn pod_images(pod: &PodInfo) -> Vec<String> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image_name)
        .collect()
}

/// Upstream's `calculatePriority`.
fn calculate_priority(sum: i64, num_containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * num_containers as i64;
    if max <= MIN_THRESHOLD {
        return 0;
    }
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// The pod's images that some node has, with the share of nodes that have each.
#[derive(Clone, Default)]
struct PreScoreState {
    images: Vec<(String, f64)>,
    num_containers: usize,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl ScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _all_nodes: &[NodeInfo],
    ) {
        let spread = state.read::<ImageSpread>().cloned().unwrap_or_default();
        let names = pod_images(pod);
        let num_containers = names.len();
        let images = names
            .into_iter()
            .filter_map(|n| {
                let have = *spread.nodes_with_image.get(&n)?;
                Some((n, have as f64 / spread.num_nodes.max(1) as f64))
            })
            .collect();
        state.write(PreScoreState {
            images,
            num_containers,
        });
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        if s.images.is_empty() {
            return 0;
        }
        let sum: i64 = s
            .images
            .iter()
            .filter_map(|(name, share)| Some((*node.images.get(name)? as f64 * share) as i64))
            .sum();
        calculate_priority(sum, s.num_containers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn normalizes_names() {
        let n = normalized_image_name;
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            n("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(n("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            n("registry.k8s.io/pause:3.10"),
            "registry.k8s.io/pause:3.10"
        );
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert_eq!(n("quay.io/a/b@sha256:abc"), "quay.io/a/b@sha256:abc");
    }

    #[test]
    fn priority_thresholds() {
        assert_eq!(calculate_priority(0, 1), 0);
        assert_eq!(calculate_priority(23 * MB, 1), 0);
        assert_eq!(calculate_priority(1000 * MB, 1), 100);
        assert_eq!(calculate_priority(5000 * MB, 1), 100);
        // (511.5 - 23) / (1000 - 23) of the way.
        assert_eq!(calculate_priority(1023 * MB / 2, 1), 50);
        assert_eq!(calculate_priority(1000 * MB, 2), 49);
    }

    fn with_images(name: &str, images: serde_json::Value) -> NodeInfo {
        let mut n = node(json!({"name": name}));
        n.status.as_mut().unwrap().images = serde_json::from_value(images).unwrap();
        NodeInfo::new(Arc::new(n))
    }

    #[test]
    fn scores_by_size_and_spread() {
        let big = json!([{"names": ["docker.io/library/big:latest", "docker.io/library/big@sha256:1"],
                          "sizeBytes": 800 * MB}]);
        let nodes = [
            with_images("a", big.clone()),
            with_images("b", big),
            with_images("c", json!([])),
            with_images("d", json!([])),
        ];
        let mut counts = HashMap::new();
        for n in &nodes {
            for name in n.images.keys() {
                *counts.entry(name.clone()).or_insert(0) += 1;
            }
        }
        let mut state = CycleState::new();
        state.write(ImageSpread {
            nodes_with_image: Arc::new(counts),
            num_nodes: nodes.len(),
        });
        let p = PodInfo::new(Arc::new(pod(
            json!({"containers": [{"name": "c", "image": "big"}]}),
        )));
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        ImageLocality.pre_score(&mut state, &p, &refs, &nodes);
        let scores: Vec<i64> = nodes
            .iter()
            .map(|n| ImageLocality.score(&state, &p, n))
            .collect();
        // 800 MiB × 2/4 nodes = 400 MiB: (400 - 23) / (1000 - 23) → 38.
        assert_eq!(scores, [38, 38, 0, 0]);
    }
}
