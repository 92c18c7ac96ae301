//! The scheduler's cache: every node with the pods bound to it (from the pod informer) and the
//! pods this scheduler has **assumed** onto a node while their binding is in flight, with the
//! per-node sums of requests kept up to date incrementally. Filters and scores read only this,
//! so a scheduling attempt makes no API call.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, PodInfo, pod_key};

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
}

fn scheduling_view_changed(old: &Node, new: &Node) -> bool {
    let (os, ns) = (old.spec.as_ref(), new.spec.as_ref());
    old.metadata.labels != new.metadata.labels
        || os.and_then(|s| s.taints.as_ref()) != ns.and_then(|s| s.taints.as_ref())
        || os.and_then(|s| s.unschedulable) != ns.and_then(|s| s.unschedulable)
        || old.status.as_ref().and_then(|s| s.allocatable.as_ref())
            != new.status.as_ref().and_then(|s| s.allocatable.as_ref())
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
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    ..NodeInfo::default()
                });
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
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
        e.set_node(node);
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
        if let Some(old) = self.pods.get(&info.key)
            && old.node != node
        {
            let old_node = old.node.clone();
            if let Some(&i) = self.index.get(&old_node) {
                self.nodes[i].remove_pod(&info.key);
            }
        }
        let key = info.key.clone();
        let e = self.entry(&node);
        e.remove_pod(&key);
        e.add_pod(info);
        self.pods.insert(
            key,
            PodState {
                node,
                assumed: false,
            },
        );
    }

    /// Forgets a pod (deleted or finished); whether it was on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(st) = self.pods.remove(key) else {
            return false;
        };
        if let Some(&i) = self.index.get(&st.node) {
            self.nodes[i].remove_pod(key);
            if self.nodes[i].node.is_none() && self.nodes[i].pods.is_empty() {
                self.remove_entry(&st.node);
            }
        }
        true
    }

    /// Counts a pod on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = pod.key.clone();
        self.entry(node).add_pod(pod);
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
}
