//! Test helpers: nodes and pods from short JSON descriptions.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

/// A node from `{"name", "labels"?, "taints"?, "unschedulable"?, "cpu"?, "memory"?, "pods"?}`;
/// allocatable defaults to 4 CPU, 8Gi, 110 pods.
pub fn node(d: Value) -> Node {
    let name = d["name"].as_str().unwrap_or("n").to_string();
    let mut labels = json!({"kubernetes.io/hostname": name});
    if let Some(l) = d["labels"].as_object() {
        for (k, v) in l {
            labels[k] = v.clone();
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": d.get("taints").cloned().unwrap_or(json!([])),
                 "unschedulable": d["unschedulable"].as_bool().unwrap_or(false)},
        "status": {"allocatable": {
            "cpu": d["cpu"].as_str().unwrap_or("4"),
            "memory": d["memory"].as_str().unwrap_or("8Gi"),
            "pods": d["pods"].as_str().unwrap_or("110")}}
    }))
    .unwrap()
}

/// A pod `default/p` with `spec` (a container is added when none is given).
pub fn pod(spec: Value) -> Pod {
    pod_named("p", json!({}), spec)
}

/// A pod `default/NAME` with labels and `spec`.
pub fn pod_named(name: &str, labels: Value, mut spec: Value) -> Pod {
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}
