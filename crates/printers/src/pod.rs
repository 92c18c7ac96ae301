//! Pod: NAME, READY, STATUS, RESTARTS, AGE; wide IP, NODE, NOMINATED NODE,
//! READINESS GATES. STATUS follows upstream's `printPod` precedence: phase,
//! status.reason, scheduling gates, init containers (`Init:0/1`,
//! `Init:CrashLoopBackOff`), container waiting/terminated reasons, then
//! `Terminating`/`Unknown` for pods being deleted.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{
    age, arr_at, bool_at, condition, condition_true, int_at, name, opt_str, present, str_at,
    time_at,
};
use crate::{AGE, Column, NAME, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[Printer {
    group: "",
    kind: "Pod",
    columns: COLUMNS,
    cells,
}];

const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP is the IP address allocated to the pod.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set when this pod preempts other pods on the node.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

/// Restart count plus the time of the latest restart seen.
#[derive(Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, "/restartCount");
        if let Some(t) = time_at(status, "/lastState/terminated/finishedAt")
            && self.last.is_none_or(|l| l < t)
        {
            self.last = Some(t);
        }
    }
}

fn is_restartable_init(spec_init: &[Value], name: &str) -> bool {
    spec_init
        .iter()
        .find(|c| str_at(c, "/name") == name)
        .is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
}

fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = str_at(term, "/reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int_at(term, "/signal");
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int_at(term, "/exitCode"))
    }
}

fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec_init = arr_at(pod, "/spec/initContainers");
    let conditions = arr_at(pod, "/status/conditions");
    let phase = str_at(pod, "/status/phase");
    let status_reason = str_at(pod, "/status/reason");

    let mut total = arr_at(pod, "/spec/containers").len();
    total += spec_init
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0usize;

    let mut reason = if status_reason.is_empty() {
        phase
    } else {
        status_reason
    }
    .to_string();
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, cs) in arr_at(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        restarts.add(cs);
        let restartable = is_restartable_init(spec_init, str_at(cs, "/name"));
        if restartable {
            sidecar_restarts.add(cs);
        }
        let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting_reason = str_at(cs, "/state/waiting/reason");
        if terminated.is_some_and(|t| int_at(t, "/exitCode") == 0) {
            continue;
        }
        if restartable && bool_at(cs, "/started") {
            if bool_at(cs, "/ready") {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            terminated_reason(t, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", spec_init.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for cs in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(cs);
            let waiting_reason = str_at(cs, "/state/waiting/reason");
            let terminated = cs.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if bool_at(cs, "/ready") && present(cs, "/state/running") {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if present(pod, "/metadata/deletionTimestamp") {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match restarts.last {
        Some(t) if restarts.count != 0 => {
            let ago = crate::human_duration(now.duration_since(t));
            format!("{} ({ago} ago)", restarts.count)
        }
        _ => restarts.count.to_string(),
    };

    let none_if_empty = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let ip = arr_at(pod, "/status/podIPs")
        .first()
        .map(|p| str_at(p, "/ip"))
        .or_else(|| opt_str(pod, "/status/podIP"))
        .unwrap_or("");
    let gates = arr_at(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                condition(conditions, str_at(g, "/conditionType"))
                    .is_some_and(|c| str_at(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(pod),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_cell),
        age(pod, now),
        Value::from(none_if_empty(ip)),
        Value::from(none_if_empty(str_at(pod, "/spec/nodeName"))),
        Value::from(none_if_empty(str_at(pod, "/status/nominatedNodeName"))),
        Value::from(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::{Value, json};

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web", "creationTimestamp": ago(3600)}, "spec": spec, "status": status})
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": ago(60)}}})
    }

    #[test]
    fn pod_cells() {
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"});
        let cases = [
            // Running, one of two ready, wide cells.
            (
                pod(
                    two.clone(),
                    json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}],
                    "containerStatuses": [running("a", true, 0), running("b", false, 0)]}),
                ),
                json!([
                    "web", "1/2", "Running", "0", "60m", "10.0.0.5", "n1", "<none>", "<none>"
                ]),
            ),
            // CrashLoopBackOff with last restart time.
            (
                pod(
                    json!({"containers": [{"name": "a"}]}),
                    json!({"phase": "Running",
                    "containerStatuses": [{"name": "a", "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}}]}),
                ),
                json!([
                    "web",
                    "0/1",
                    "CrashLoopBackOff",
                    "3 (5m ago)",
                    "60m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
            // Init container still running.
            (
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [{"name": "i", "state": {"running": {}}}],
                        "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                json!([
                    "web", "0/1", "Init:0/1", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            // Init container crash looping.
            (
                pod(
                    json!({"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"terminated": {"exitCode": 0}}},
                        {"name": "j", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                ),
                json!([
                    "web",
                    "0/1",
                    "Init:CrashLoopBackOff",
                    "2",
                    "60m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
            // Init container failed without reason.
            (
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                json!([
                    "web",
                    "0/1",
                    "Init:ExitCode:2",
                    "0",
                    "60m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
            // Sidecar (restartable init container) counts towards ready/total.
            (
                pod(
                    json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                        "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1,
                            "state": {"running": {}}}],
                        "containerStatuses": [running("a", true, 0)]}),
                ),
                json!([
                    "web", "2/2", "Running", "1", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            // Completed.
            (
                pod(
                    json!({"containers": [{"name": "a"}]}),
                    json!({"phase": "Succeeded",
                    "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                json!([
                    "web",
                    "0/1",
                    "Completed",
                    "0",
                    "60m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
            // Completed container beside a running one: NotReady without Ready condition.
            (
                pod(
                    two.clone(),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    running("b", true, 0)]}),
                ),
                json!([
                    "web", "1/2", "NotReady", "0", "60m", "<none>", "n1", "<none>", "<none>"
                ]),
            ),
            // Terminated by signal.
            (
                pod(
                    json!({"containers": [{"name": "a"}]}),
                    json!({"phase": "Running",
                    "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                json!([
                    "web", "0/1", "Signal:9", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            // Terminating.
            (
                json!({"metadata": {"name": "web", "creationTimestamp": ago(3600), "deletionTimestamp": ago(1)},
                    "spec": {"containers": [{"name": "a"}]},
                    "status": {"phase": "Running", "containerStatuses": [running("a", true, 0)]}}),
                json!([
                    "web",
                    "1/1",
                    "Terminating",
                    "0",
                    "60m",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
            // Node lost while deleting.
            (
                json!({"metadata": {"name": "web", "creationTimestamp": ago(3600), "deletionTimestamp": ago(1)},
                    "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running", "reason": "NodeLost"}}),
                json!([
                    "web", "0/1", "Unknown", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            // Status reason (Evicted) wins over phase.
            (
                pod(
                    json!({"containers": [{"name": "a"}]}),
                    json!({"phase": "Failed", "reason": "Evicted"}),
                ),
                json!([
                    "web", "0/1", "Evicted", "0", "60m", "<none>", "<none>", "<none>", "<none>"
                ]),
            ),
            // Scheduling gated, nominated node, readiness gates.
            (
                pod(
                    json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]}),
                    json!({"phase": "Pending", "nominatedNodeName": "n2", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                        {"type": "x", "status": "True"}, {"type": "y", "status": "False"}]}),
                ),
                json!([
                    "web",
                    "0/1",
                    "SchedulingGated",
                    "0",
                    "60m",
                    "<none>",
                    "<none>",
                    "n2",
                    "1/2"
                ]),
            ),
            // Empty object.
            (
                json!({}),
                json!([
                    "",
                    "0/0",
                    "",
                    "0",
                    "<unknown>",
                    "<none>",
                    "<none>",
                    "<none>",
                    "<none>"
                ]),
            ),
        ];
        for (obj, expect) in cases {
            check("", "Pod", obj, expect);
        }
    }
}
