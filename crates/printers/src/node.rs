//! Node and Namespace (core group, cluster-scoped).

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{age, arr_at, bool_at, map_at, name, str_at};
use crate::{AGE, Column, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "",
        kind: "Node",
        columns: NODE,
        cells: node,
    },
    Printer {
        group: "",
        kind: "Namespace",
        columns: NAMESPACE,
        cells: namespace,
    },
];

const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const ROLE_LABEL: &str = "kubernetes.io/role";

/// Upstream's `findNodeRoles`: sorted, de-duplicated role names.
fn roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in map_at(node, "/metadata/labels").into_iter().flatten() {
        let role = match k.strip_prefix(ROLE_PREFIX) {
            Some(role) => role,
            None if k == ROLE_LABEL => v.as_str().unwrap_or(""),
            None => "",
        };
        if !role.is_empty() {
            roles.push(role.to_string());
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn address(node: &Value, type_: &str) -> String {
    arr_at(node, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == type_)
        .map_or_else(
            || "<none>".to_string(),
            |a| str_at(a, "/address").to_string(),
        )
}

fn node(node: &Value, now: Timestamp) -> Vec<Value> {
    // Upstream looks only at the Ready condition (the last one of that type wins).
    let conditions = arr_at(node, "/status/conditions");
    let ready = conditions
        .iter()
        .rev()
        .find(|c| str_at(c, "/type") == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, "/status") == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if bool_at(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| -> Value {
        match str_at(node, &format!("/status/nodeInfo/{field}")) {
            "" => Value::from("<unknown>"),
            v => Value::from(v),
        }
    };
    vec![
        name(node),
        Value::from(status.join(",")),
        Value::from(roles(node)),
        age(node, now),
        Value::from(str_at(node, "/status/nodeInfo/kubeletVersion")),
        Value::from(address(node, "InternalIP")),
        Value::from(address(node, "ExternalIP")),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(ns),
        Value::from(str_at(ns, "/status/phase")),
        age(ns, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn nodes() {
        let info = json!({"kubeletVersion": "v1.35.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
            "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"});
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "n1", "creationTimestamp": ago(5 * 3600 + 180),
                        "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": "", "kubernetes.io/hostname": "n1"}},
                    "spec": {"unschedulable": true},
                    "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                        "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "n1"}],
                        "nodeInfo": info}}),
                json!([
                    "n1",
                    "Ready,SchedulingDisabled",
                    "control-plane,worker",
                    "5h3m",
                    "v1.35.0",
                    "192.168.1.10",
                    "<none>",
                    "Debian GNU/Linux 12 (bookworm)",
                    "6.1.0",
                    "containerd://1.7.0"
                ]),
            ),
            (
                json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/role": "gpu"}},
                    "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                        "addresses": [{"type": "ExternalIP", "address": "8.8.8.8"}]}}),
                json!([
                    "n2",
                    "NotReady",
                    "gpu",
                    "<unknown>",
                    "",
                    "<none>",
                    "8.8.8.8",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
            (
                json!({"metadata": {"name": "n3"}}),
                json!([
                    "n3",
                    "Unknown",
                    "<none>",
                    "<unknown>",
                    "",
                    "<none>",
                    "<none>",
                    "<unknown>",
                    "<unknown>",
                    "<unknown>"
                ]),
            ),
        ] {
            check("", "Node", obj, expect);
        }
    }

    #[test]
    fn namespaces() {
        check(
            "",
            "Namespace",
            json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(40 * 86400)}, "status": {"phase": "Active"}}),
            json!(["kube-system", "Active", "40d"]),
        );
        check(
            "",
            "Namespace",
            json!({"metadata": {"name": "x", "creationTimestamp": ago(10)}, "status": {"phase": "Terminating"}}),
            json!(["x", "Terminating", "10s"]),
        );
    }
}
