//! RBAC (`rbac.authorization.k8s.io`): Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{age, arr_at, created_at, name, str_at};
use crate::{AGE, CREATED_AT, Column, NAME, Printer, col, wide};

const GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: GROUP,
        kind: "Role",
        columns: ROLE,
        cells: role,
    },
    Printer {
        group: GROUP,
        kind: "ClusterRole",
        columns: ROLE,
        cells: role,
    },
    Printer {
        group: GROUP,
        kind: "RoleBinding",
        columns: BINDING,
        cells: binding,
    },
    Printer {
        group: GROUP,
        kind: "ClusterRoleBinding",
        columns: BINDING,
        cells: binding,
    },
];

const ROLE: &[Column] = &[NAME, CREATED_AT];

fn role(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name(obj), created_at(obj)]
}

const BINDING: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

fn binding(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for s in arr_at(obj, "/subjects") {
        let subject = str_at(s, "/name");
        match str_at(s, "/kind") {
            "User" => users.push(subject.to_string()),
            "Group" => groups.push(subject.to_string()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}:{subject}", str_at(s, "/namespace")));
            }
            _ => {}
        }
    }
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            str_at(obj, "/roleRef/kind"),
            str_at(obj, "/roleRef/name")
        )),
        age(obj, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(service_accounts.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::GROUP;
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn rbac() {
        let binding = json!({"metadata": {"name": "b", "creationTimestamp": ago(45)},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}]});
        for (kind, obj, expect) in [
            (
                "Role",
                json!({"metadata": {"name": "r", "creationTimestamp": "2024-05-01T08:00:00Z"}}),
                json!(["r", "2024-05-01T08:00:00Z"]),
            ),
            (
                "ClusterRole",
                json!({"metadata": {"name": "admin", "creationTimestamp": "2024-05-01T08:00:00+02:00"}}),
                json!(["admin", "2024-05-01T06:00:00Z"]),
            ),
            (
                "RoleBinding",
                binding.clone(),
                json!([
                    "b",
                    "ClusterRole/view",
                    "45s",
                    "alice, bob",
                    "devs",
                    "ci:deployer"
                ]),
            ),
            (
                "ClusterRoleBinding",
                json!({"metadata": {"name": "c"}}),
                json!(["c", "/", "<unknown>", "", "", ""]),
            ),
        ] {
            check(GROUP, kind, obj, expect);
        }
    }
}
