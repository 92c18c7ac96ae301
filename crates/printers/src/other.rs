//! Small single-kind groups: Lease (`coordination.k8s.io`), PriorityClass
//! (`scheduling.k8s.io`), PodDisruptionBudget (`policy`) and
//! CustomResourceDefinition (`apiextensions.k8s.io`, upstream's default
//! Name / Created At table).

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{age, created_at, int_at, int_or_string, name, opt_str, str_at};
use crate::{AGE, CREATED_AT, Column, NAME, Printer, col};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "coordination.k8s.io",
        kind: "Lease",
        columns: LEASE,
        cells: lease,
    },
    Printer {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        columns: PRIORITY_CLASS,
        cells: priority_class,
    },
    Printer {
        group: "policy",
        kind: "PodDisruptionBudget",
        columns: POD_DISRUPTION_BUDGET,
        cells: pod_disruption_budget,
    },
    Printer {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        columns: CUSTOM_RESOURCE_DEFINITION,
        cells: custom_resource_definition,
    },
];

const LEASE: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

fn lease(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/holderIdentity")),
        age(obj, now),
    ]
}

const PRIORITY_CLASS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
    ),
    col(
        "Preemption-Policy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority.",
    ),
    AGE,
];

fn priority_class(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(int_at(obj, "/value")),
        Value::from(
            obj.pointer("/globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        Value::from(opt_str(obj, "/preemptionPolicy").unwrap_or("<unset>")),
        age(obj, now),
    ]
}

const POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

fn int_or_string_or_na(obj: &Value, ptr: &str) -> Value {
    Value::from(
        obj.pointer(ptr)
            .filter(|v| !v.is_null())
            .map_or_else(|| "N/A".to_string(), int_or_string),
    )
}

fn pod_disruption_budget(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        int_or_string_or_na(obj, "/spec/minAvailable"),
        int_or_string_or_na(obj, "/spec/maxUnavailable"),
        Value::from(int_at(obj, "/status/disruptionsAllowed")),
        age(obj, now),
    ]
}

const CUSTOM_RESOURCE_DEFINITION: &[Column] = &[NAME, CREATED_AT];

fn custom_resource_definition(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name(obj), created_at(obj)]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn small_kinds() {
        let meta = json!({"name": "x", "creationTimestamp": ago(45)});
        for (group, kind, obj, expect) in [
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": meta, "spec": {"holderIdentity": "n1"}}),
                json!(["x", "n1", "45s"]),
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"metadata": meta}),
                json!(["x", "", "45s"]),
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": meta, "value": 2000001000, "globalDefault": false, "preemptionPolicy": "PreemptLowerPriority"}),
                json!(["x", 2000001000, false, "PreemptLowerPriority", "45s"]),
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": meta}),
                json!(["x", 0, false, "<unset>", "45s"]),
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata": meta, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}}),
                json!(["x", "2", "N/A", 1, "45s"]),
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"metadata": meta, "spec": {"maxUnavailable": "25%"}}),
                json!(["x", "N/A", "25%", 0, "45s"]),
            ),
            (
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                json!({"metadata": {"name": "crontabs.stable.example.com", "creationTimestamp": "2024-05-01T08:00:00Z"}}),
                json!(["crontabs.stable.example.com", "2024-05-01T08:00:00Z"]),
            ),
        ] {
            check(group, kind, obj, expect);
        }
    }
}
