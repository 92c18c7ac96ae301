//! The scheduler's cache: every node with the pods bound to it (from the pod informer) and the
//! pods this scheduler has **assumed** onto a node while their binding is in flight, with the
//! per-node sums of requests kept up to date incrementally, the pods nominated to a node by
//! preemption, and the namespaces' labels. Filters and scores read only this, so a scheduling
//! attempt makes no API call.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{AffinityTotals, NamespaceLabels, NodeInfo, PodInfo, pod_key};

struct PodState {
    node: String,
    assumed: bool,
}

/// Nodes and the pods on them.
#[derive(Default)]
pub struct Cache {
    /// Every node, in a stable order (the round-robin start of each attempt moves along it).
    pub nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, PodState>,
    real_nodes: usize,
    /// Where the next attempt starts searching (upstream's `nextStartNodeIndex`).
    pub next_start: usize,
    /// Labels of every namespace (shared with attempts in flight, copied on change).
    pub namespaces: Arc<NamespaceLabels>,
    /// Pods nominated to a node by preemption: pod key → node.
    nominations: HashMap<String, String>,
    /// How many nodes have each image (normalized name), for ImageLocality.
    pub nodes_with_image: Arc<HashMap<String, usize>>,
    /// Pods with affinity terms over all nodes, for InterPodAffinity's shortcuts.
    pub affinity_totals: AffinityTotals,
}

fn scheduling_view_changed(old: &Node, new: &Node) -> bool {
    let (os, ns) = (old.spec.as_ref(), new.spec.as_ref());
    old.metadata.labels != new.metadata.labels
        || os.and_then(|s| s.taints.as_ref()) != ns.and_then(|s| s.taints.as_ref())
        || os.and_then(|s| s.unschedulable) != ns.and_then(|s| s.unschedulable)
        || old.status.as_ref().and_then(|s| s.allocatable.as_ref())
            != new.status.as_ref().and_then(|s| s.allocatable.as_ref())
}

fn uncount_images(counts: &mut HashMap<String, usize>, images: &[String]) {
    for i in images {
        if let Some(c) = counts.get_mut(i) {
            *c -= 1;
            if *c == 0 {
                counts.remove(i);
            }
        }
    }
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nodes exist (nodes only known through their pods excluded).
    pub fn node_count(&self) -> usize {
        self.real_nodes
    }

    fn entry(&mut self, name: &str) -> &mut NodeInfo {
        let i = self.entry_index(name);
        &mut self.nodes[i]
    }

    /// Changes the pods of node `i`, keeping the cluster-wide affinity totals.
    fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut NodeInfo) -> R) -> R {
        let n = &mut self.nodes[i];
        let before = (n.pods_with_affinity, n.pods_with_required_anti_affinity);
        let r = f(n);
        let n = &self.nodes[i];
        self.affinity_totals.pods_with_affinity += n.pods_with_affinity;
        self.affinity_totals.pods_with_affinity -= before.0;
        self.affinity_totals.pods_with_required_anti_affinity += n.pods_with_required_anti_affinity;
        self.affinity_totals.pods_with_required_anti_affinity -= before.1;
        r
    }

    fn entry_index(&mut self, name: &str) -> usize {
        match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..NodeInfo::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        }
    }

    fn remove_entry(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.nodes.swap_remove(i);
            if let Some(moved) = self.nodes.get(i) {
                self.index.insert(moved.name.clone(), i);
            }
        }
    }

    /// Adds or replaces a node; whether this could make pending pods schedulable (a new
    /// node, or changed labels, taints, cordon or allocatable).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        let e = self.entry(&name);
        let relevant = match &e.node {
            None => true,
            Some(old) => scheduling_view_changed(old, &node),
        };
        let was_real = e.node.is_some();
        let old_images: Vec<String> = e.images.keys().cloned().collect();
        e.set_node(node);
        let changed = !was_real
            || old_images.len() != e.images.len()
            || old_images.iter().any(|i| !e.images.contains_key(i));
        if changed {
            let new_images: Vec<String> = e.images.keys().cloned().collect();
            let counts = Arc::make_mut(&mut self.nodes_with_image);
            if was_real {
                uncount_images(counts, &old_images);
            }
            for i in new_images {
                *counts.entry(i).or_default() += 1;
            }
        }
        if !was_real {
            self.real_nodes += 1;
        }
        relevant
    }

    /// Removes a node (its pods stay accounted until they are deleted).
    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].node.take().is_some() {
            self.real_nodes -= 1;
            let images: Vec<String> = self.nodes[i].images.drain().map(|(k, _)| k).collect();
            uncount_images(Arc::make_mut(&mut self.nodes_with_image), &images);
        }
        if self.nodes[i].pods.is_empty() {
            self.remove_entry(name);
        }
    }

    /// The names of all nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.node.is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Records a pod bound to a node (from the informer); confirms an assumed pod.
    pub fn add_or_update_pod(&mut self, pod: Arc<Pod>) {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let info = Arc::new(PodInfo::new(pod));
        self.clear_nomination(&info.key);
        if let Some(old) = self.pods.get(&info.key)
            && old.node != node
        {
            let old_node = old.node.clone();
            if let Some(&i) = self.index.get(&old_node) {
                self.with_node(i, |n| n.remove_pod(&info.key));
            }
        }
        let key = info.key.clone();
        let i = self.entry_index(&node);
        self.with_node(i, |n| {
            n.remove_pod(&key);
            n.add_pod(info);
        });
        self.pods.insert(
            key,
            PodState {
                node,
                assumed: false,
            },
        );
    }

    /// Reserves room on `node` for a preemptor (replacing an earlier nomination of it).
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.clear_nomination(&pod.key);
        self.nominations.insert(pod.key.clone(), node.to_string());
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].nominated.push(pod);
        }
    }

    /// Drops the pod's nomination, if any.
    pub fn clear_nomination(&mut self, key: &str) {
        let Some(node) = self.nominations.remove(key) else {
            return;
        };
        if let Some(&i) = self.index.get(&node) {
            self.nodes[i].nominated.retain(|p| p.key != key);
        }
    }

    /// The node the pod is nominated to.
    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominations.get(key).map(String::as_str)
    }

    /// Records a namespace's labels.
    pub fn upsert_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        if self.namespaces.get(name) != Some(&labels) {
            Arc::make_mut(&mut self.namespaces).insert(name.to_string(), labels);
        }
    }

    /// Forgets a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        if self.namespaces.contains_key(name) {
            Arc::make_mut(&mut self.namespaces).remove(name);
        }
    }

    /// Forgets a pod (deleted or finished); whether it was on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.clear_nomination(key);
        let Some(st) = self.pods.remove(key) else {
            return false;
        };
        if let Some(&i) = self.index.get(&st.node) {
            self.with_node(i, |n| n.remove_pod(key));
            if self.nodes[i].node.is_none() && self.nodes[i].pods.is_empty() {
                self.remove_entry(&st.node);
            }
        }
        true
    }

    /// Counts a pod on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = pod.key.clone();
        self.clear_nomination(&key);
        let i = self.entry_index(node);
        self.with_node(i, |n| n.add_pod(pod));
        self.pods.insert(
            key,
            PodState {
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Drops an assumed pod whose binding failed (a confirmed one stays).
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether the pod is bound or assumed here.
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Keys of the pods known bound (not assumed), for re-list reconciliation.
    pub fn bound_pod_keys(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, p)| !p.assumed)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The node a pod is on, if any.
    pub fn pod_node(&self, pod: &Pod) -> Option<&str> {
        self.pods.get(&pod_key(pod)).map(|p| p.node.as_str())
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod_named};
    use serde_json::json;

    fn bound(name: &str, node: &str, cpu: &str) -> Arc<Pod> {
        Arc::new(pod_named(
            name,
            json!({}),
            json!({"nodeName": node,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        ))
    }

    #[test]
    fn accounting() {
        let mut c = Cache::new();
        assert!(c.upsert_node(Arc::new(node(json!({"name": "a"})))));
        assert!(!c.upsert_node(Arc::new(node(json!({"name": "a"})))));
        assert!(c.upsert_node(Arc::new(node(json!({"name": "a", "labels": {"x": "y"}})))));
        c.add_or_update_pod(bound("p1", "a", "1"));
        c.add_or_update_pod(bound("p1", "a", "1")); // repeated events do not double-count
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 1000);
        // A pod bound to a node the cache has not seen yet.
        c.add_or_update_pod(bound("p2", "b", "2"));
        assert_eq!(c.node_count(), 1);
        c.upsert_node(Arc::new(node(json!({"name": "b"}))));
        assert_eq!(c.node("b").unwrap().requested.milli_cpu, 2000);
        // Assume, then the informer confirms: still counted once.
        let p3 = bound("p3", "a", "500m");
        c.assume(Arc::new(PodInfo::new(p3.clone())), "a");
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 1500);
        c.add_or_update_pod(p3);
        c.forget("default/p3"); // confirmed: forget is a no-op
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 1500);
        // Assumed then forgotten.
        c.assume(Arc::new(PodInfo::new(bound("p4", "a", "1"))), "a");
        c.forget("default/p4");
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 1500);
        assert!(c.remove_pod("default/p1"));
        assert_eq!(c.node("a").unwrap().requested.milli_cpu, 500);
        c.remove_node("b");
        assert_eq!(c.node_count(), 1);
        assert!(c.node("b").is_some()); // p2 still there
        c.remove_pod("default/p2");
        assert!(c.node("b").is_none());
        assert_eq!(c.node_names(), vec!["a"]);
    }

    #[test]
    fn image_counts_follow_nodes() {
        let with = |name: &str, images: serde_json::Value| {
            let mut n = node(json!({"name": name}));
            n.status.as_mut().unwrap().images = serde_json::from_value(images).unwrap();
            Arc::new(n)
        };
        let busybox = json!([{"names": ["docker.io/library/busybox:latest"], "sizeBytes": 1}]);
        let mut c = Cache::new();
        c.upsert_node(with("a", busybox.clone()));
        c.upsert_node(with("b", busybox.clone()));
        c.upsert_node(with("b", busybox)); // a heartbeat changes nothing
        let key = "docker.io/library/busybox:latest";
        assert_eq!(c.nodes_with_image.get(key), Some(&2));
        c.upsert_node(with("b", json!([])));
        assert_eq!(c.nodes_with_image.get(key), Some(&1));
        c.remove_node("a");
        assert_eq!(c.nodes_with_image.get(key), None);
    }

    #[test]
    fn affinity_totals_follow_pods() {
        let mut c = Cache::new();
        c.upsert_node(Arc::new(node(json!({"name": "a"}))));
        let anti = Arc::new(pod_named(
            "x",
            json!({}),
            json!({"nodeName": "a", "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {}, "topologyKey": "kubernetes.io/hostname"}]}}}),
        ));
        c.assume(Arc::new(PodInfo::new(anti.clone())), "a");
        c.add_or_update_pod(anti);
        let want = AffinityTotals {
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 1,
        };
        assert_eq!(c.affinity_totals, want);
        c.remove_pod("default/x");
        assert_eq!(c.affinity_totals, AffinityTotals::default());
    }
}
