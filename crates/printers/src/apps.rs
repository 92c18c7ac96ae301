//! Workload controllers: Deployment, ReplicaSet, DaemonSet, StatefulSet,
//! ControllerRevision (group `apps`) and the core ReplicationController.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{
    age, arr_at, containers_and_images, format_labels, int_at, map_at, name, selector_cell, str_at,
};
use crate::{AGE, CONTAINERS, Column, IMAGES, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "apps",
        kind: "Deployment",
        columns: DEPLOYMENT,
        cells: deployment,
    },
    Printer {
        group: "apps",
        kind: "ReplicaSet",
        columns: REPLICA_SET,
        cells: replica_set,
    },
    Printer {
        group: "",
        kind: "ReplicationController",
        columns: REPLICATION_CONTROLLER,
        cells: replication_controller,
    },
    Printer {
        group: "apps",
        kind: "DaemonSet",
        columns: DAEMON_SET,
        cells: daemon_set,
    },
    Printer {
        group: "apps",
        kind: "StatefulSet",
        columns: STATEFUL_SET,
        cells: stateful_set,
    },
    Printer {
        group: "apps",
        kind: "ControllerRevision",
        columns: CONTROLLER_REVISION,
        cells: controller_revision,
    },
];

const SELECTOR: Column = wide(
    "Selector",
    "string",
    "A label query over pods that should match the replicas count.",
);
const TEMPLATE: &str = "/spec/template/spec/containers";

const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "integer",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "integer",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// The READY cell of Deployments and StatefulSets: `ready/desired` replicas, e.g. `3/4`.
fn ready_of_desired(obj: &Value) -> Value {
    Value::from(format!(
        "{}/{}",
        int_at(obj, "/status/readyReplicas"),
        int_at(obj, "/spec/replicas")
    ))
}

fn deployment(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = containers_and_images(obj, TEMPLATE);
    vec![
        name(obj),
        ready_of_desired(obj),
        Value::from(int_at(obj, "/status/updatedReplicas")),
        Value::from(int_at(obj, "/status/availableReplicas")),
        age(obj, now),
        containers,
        images,
        selector_cell(obj, "/spec/selector"),
    ]
}

const REPLICA_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = containers_and_images(obj, TEMPLATE);
    vec![
        name(obj),
        Value::from(int_at(obj, "/spec/replicas")),
        Value::from(int_at(obj, "/status/replicas")),
        Value::from(int_at(obj, "/status/readyReplicas")),
        age(obj, now),
        containers,
        images,
        selector_cell(obj, "/spec/selector"),
    ]
}

const REPLICATION_CONTROLLER: &[Column] = REPLICA_SET;

fn replication_controller(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = replica_set(obj, now);
    if let Some(last) = cells.last_mut() {
        *last = Value::from(format_labels(map_at(obj, "/spec/selector")));
    }
    cells
}

const DAEMON_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod.",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = containers_and_images(obj, TEMPLATE);
    vec![
        name(obj),
        Value::from(int_at(obj, "/status/desiredNumberScheduled")),
        Value::from(int_at(obj, "/status/currentNumberScheduled")),
        Value::from(int_at(obj, "/status/numberReady")),
        Value::from(int_at(obj, "/status/updatedNumberScheduled")),
        Value::from(int_at(obj, "/status/numberAvailable")),
        Value::from(format_labels(map_at(
            obj,
            "/spec/template/spec/nodeSelector",
        ))),
        age(obj, now),
        containers,
        images,
        selector_cell(obj, "/spec/selector"),
    ]
}

const STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn stateful_set(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [containers, images] = containers_and_images(obj, TEMPLATE);
    vec![
        name(obj),
        ready_of_desired(obj),
        age(obj, now),
        containers,
        images,
    ]
}

const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "integer",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

/// `kind.group/name` of the controlling owner, as upstream's `formatResourceName`.
pub(crate) fn controller_of(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, "/apiVersion");
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = str_at(owner, "/kind");
    let owner_name = str_at(owner, "/name");
    if kind.is_empty() && group.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

fn controller_revision(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(controller_of(obj)),
        Value::from(int_at(obj, "/revision")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    fn meta() -> serde_json::Value {
        json!({"name": "web", "creationTimestamp": ago(3 * 86400 + 5 * 3600)})
    }

    /// `lead` (name and the kind's own columns) followed by the columns every workload built
    /// from [`meta`] and [`template`] ends with: AGE, CONTAINERS, IMAGES, SELECTOR.
    fn workload_row(lead: serde_json::Value) -> serde_json::Value {
        let tail = ["3d5h", "nginx,side", "nginx:1.25,busybox", "app=web"];
        let mut row = lead.as_array().cloned().unwrap_or_default();
        row.extend(tail.map(serde_json::Value::from));
        row.into()
    }

    fn template() -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}],
            "nodeSelector": {"disk": "ssd"}}})
    }

    #[test]
    fn workloads() {
        let sel = json!({"matchLabels": {"app": "web"}});
        for (group, kind, obj, expect) in [
            (
                "apps",
                "Deployment",
                json!({"metadata": meta(), "spec": {"replicas": 4, "selector": sel, "template": template()},
                    "status": {"readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3}}),
                workload_row(json!(["web", "3/4", 4, 3])),
            ),
            (
                "apps",
                "Deployment",
                json!({}),
                json!(["", "0/0", 0, 0, "<unknown>", "", "", ""]),
            ),
            (
                "apps",
                "ReplicaSet",
                json!({"metadata": meta(), "spec": {"replicas": 2, "selector": sel, "template": template()},
                    "status": {"replicas": 2, "readyReplicas": 1}}),
                workload_row(json!(["web", 2, 2, 1])),
            ),
            (
                "",
                "ReplicationController",
                json!({"metadata": meta(), "spec": {"replicas": 2, "selector": {"app": "web"}, "template": template()},
                    "status": {"replicas": 2}}),
                workload_row(json!(["web", 2, 2, 0])),
            ),
            (
                "",
                "ReplicationController",
                json!({}),
                json!(["", 0, 0, 0, "<unknown>", "", "", "<none>"]),
            ),
            (
                "apps",
                "DaemonSet",
                json!({"metadata": meta(), "spec": {"selector": sel, "template": template()},
                    "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                        "updatedNumberScheduled": 3, "numberAvailable": 2}}),
                workload_row(json!(["web", 3, 3, 2, 3, 2, "disk=ssd"])),
            ),
            (
                "apps",
                "StatefulSet",
                json!({"metadata": meta(), "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 1}}),
                json!(["web", "1/3", "3d5h", "nginx,side", "nginx:1.25,busybox"]),
            ),
            (
                "apps",
                "ControllerRevision",
                json!({"metadata": {"name": "web-5d8", "creationTimestamp": ago(90), "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web", "controller": true}]}, "revision": 2}),
                json!(["web-5d8", "daemonset.apps/web", 2, "90s"]),
            ),
            (
                "apps",
                "ControllerRevision",
                json!({"metadata": {"name": "r"}}),
                json!(["r", "<none>", 0, "<unknown>"]),
            ),
        ] {
            check(group, kind, obj, expect);
        }
    }
}
