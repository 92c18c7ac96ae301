//! Configuration and policy objects of the core group: ConfigMap, Secret,
//! ServiceAccount, ResourceQuota, LimitRange.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{age, arr_at, created_at, map_at, map_len, name, scalar_text, str_at};
use crate::{AGE, CREATED_AT, Column, NAME, Printer, col};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "",
        kind: "ConfigMap",
        columns: CONFIG_MAP,
        cells: config_map,
    },
    Printer {
        group: "",
        kind: "Secret",
        columns: SECRET,
        cells: secret,
    },
    Printer {
        group: "",
        kind: "ServiceAccount",
        columns: SERVICE_ACCOUNT,
        cells: service_account,
    },
    Printer {
        group: "",
        kind: "ResourceQuota",
        columns: RESOURCE_QUOTA,
        cells: resource_quota,
    },
    Printer {
        group: "",
        kind: "LimitRange",
        columns: LIMIT_RANGE,
        cells: limit_range,
    },
];

const CONFIG_MAP: &[Column] = &[
    NAME,
    col("Data", "integer", "Data contains the configuration data."),
    AGE,
];

fn config_map(obj: &Value, now: Timestamp) -> Vec<Value> {
    let count = map_len(obj, "/data") + map_len(obj, "/binaryData");
    vec![name(obj), Value::from(count), age(obj, now)]
}

const SECRET: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "integer", "Data contains the secret data."),
    AGE,
];

fn secret(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(str_at(obj, "/type")),
        Value::from(map_len(obj, "/data")),
        age(obj, now),
    ]
}

const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "integer",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
    ),
    AGE,
];

fn service_account(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(obj),
        Value::from(arr_at(obj, "/secrets").len()),
        age(obj, now),
    ]
}

const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    AGE,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
    ),
];

/// Upstream's ResourceQuota cells: `resource: used/hard` for every hard
/// resource, sorted by name; `limits.*` go to the Limit column.
fn resource_quota(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<(&String, &Value)> =
        map_at(obj, "/status/hard").into_iter().flatten().collect();
    resources.sort_by(|a, b| a.0.cmp(b.0));
    let used = map_at(obj, "/status/used");
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for (resource, hard) in resources {
        let used = used
            .and_then(|u| u.get(resource))
            .map_or_else(|| "0".to_string(), scalar_text);
        let entry = format!("{resource}: {used}/{}", scalar_text(hard));
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    vec![
        name(obj),
        age(obj, now),
        Value::from(request.join(", ")),
        Value::from(limit.join(", ")),
    ]
}

const LIMIT_RANGE: &[Column] = &[NAME, CREATED_AT];

fn limit_range(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name(obj), created_at(obj)]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn config_objects() {
        let meta = json!({"name": "x", "creationTimestamp": ago(45)});
        for (kind, obj, expect) in [
            (
                "ConfigMap",
                json!({"metadata": meta, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}),
                json!(["x", 3, "45s"]),
            ),
            (
                "ConfigMap",
                json!({"metadata": meta}),
                json!(["x", 0, "45s"]),
            ),
            (
                "Secret",
                json!({"metadata": meta, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}),
                json!(["x", "kubernetes.io/tls", 2, "45s"]),
            ),
            (
                "Secret",
                json!({"metadata": meta}),
                json!(["x", "", 0, "45s"]),
            ),
            (
                "ServiceAccount",
                json!({"metadata": meta, "secrets": [{"name": "t"}]}),
                json!(["x", 1, "45s"]),
            ),
            (
                "ServiceAccount",
                json!({"metadata": meta}),
                json!(["x", 0, "45s"]),
            ),
            (
                "ResourceQuota",
                json!({"metadata": meta, "status": {
                    "hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2", "limits.memory": "8Gi"},
                    "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"}}}),
                json!([
                    "x",
                    "45s",
                    "pods: 3/10, requests.cpu: 500m/2",
                    "limits.cpu: 1/4, limits.memory: 0/8Gi"
                ]),
            ),
            (
                "ResourceQuota",
                json!({"metadata": meta}),
                json!(["x", "45s", "", ""]),
            ),
            (
                "LimitRange",
                json!({"metadata": {"name": "lr", "creationTimestamp": "2024-05-01T08:00:00Z"}}),
                json!(["lr", "2024-05-01T08:00:00Z"]),
            ),
        ] {
            check("", kind, obj, expect);
        }
    }
}
