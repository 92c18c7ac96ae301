//! Events: core `Event` and `events.k8s.io` `Event`. Upstream prints both
//! from the same internal type, so the events.k8s.io field names (`regarding`,
//! `note`, `deprecatedSource`, ...) are mapped onto the core ones first.

use jiff::Timestamp;
use serde_json::Value;

use crate::util::{int_at, present, since, str_at, time_at};
use crate::{Column, NAME, NAME_DESC, Printer, col, wide};

pub(crate) const PRINTERS: &[Printer] = &[
    Printer {
        group: "",
        kind: "Event",
        columns: EVENT,
        cells: core_event,
    },
    Printer {
        group: "events.k8s.io",
        kind: "Event",
        columns: EVENT,
        cells: events_event,
    },
];

const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        priority: 1,
        description: NAME_DESC,
        ..NAME
    },
];

/// Field locations of one event flavour.
struct Fields {
    involved: &'static str,
    message: &'static str,
    source: &'static str,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    /// The reporting component, the SOURCE column's fallback when `source` is empty.
    reporting: &'static str,
}

const CORE: Fields = Fields {
    involved: "/involvedObject",
    message: "/message",
    source: "/source",
    first: "/firstTimestamp",
    last: "/lastTimestamp",
    count: "/count",
    reporting: "/reportingComponent",
};

const EVENTS_V1: Fields = Fields {
    involved: "/regarding",
    message: "/note",
    source: "/deprecatedSource",
    first: "/deprecatedFirstTimestamp",
    last: "/deprecatedLastTimestamp",
    count: "/deprecatedCount",
    reporting: "/reportingController",
};

fn core_event(obj: &Value, now: Timestamp) -> Vec<Value> {
    event(obj, now, &CORE)
}

fn events_event(obj: &Value, now: Timestamp) -> Vec<Value> {
    event(obj, now, &EVENTS_V1)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

fn event(obj: &Value, now: Timestamp, f: &Fields) -> Vec<Value> {
    let first_seen = if time_at(obj, f.first).is_some() {
        since(obj, f.first, now)
    } else {
        since(obj, "/eventTime", now)
    };
    let mut last_seen = if time_at(obj, f.last).is_some() {
        since(obj, f.last, now)
    } else {
        first_seen.clone()
    };
    let mut count = int_at(obj, f.count);
    if present(obj, "/series") && obj.pointer("/series").is_some_and(Value::is_object) {
        last_seen = since(obj, "/series/lastObservedTime", now);
        count = int_at(obj, "/series/count");
    } else if count == 0 {
        count = 1;
    }

    let kind = str_at(obj, &format!("{}/kind", f.involved)).to_lowercase();
    let involved_name = str_at(obj, &format!("{}/name", f.involved));
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };
    let component = first_non_empty(
        str_at(obj, &format!("{}/component", f.source)),
        str_at(obj, f.reporting),
    );
    let instance = first_non_empty(
        str_at(obj, &format!("{}/host", f.source)),
        str_at(obj, "/reportingInstance"),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };

    vec![
        Value::from(last_seen),
        Value::from(str_at(obj, "/type")),
        Value::from(str_at(obj, "/reason")),
        Value::from(target),
        Value::from(str_at(obj, &format!("{}/fieldPath", f.involved))),
        Value::from(source),
        Value::from(str_at(obj, f.message).trim()),
        Value::from(first_seen),
        Value::from(count),
        Value::from(str_at(obj, "/metadata/name")),
    ]
}

#[cfg(test)]
mod tests {
    use crate::testing::{ago, check};
    use serde_json::json;

    #[test]
    fn core_events() {
        for (obj, expect) in [
            (
                json!({"metadata": {"name": "web.17a"}, "type": "Normal", "reason": "Pulled",
                    "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{nginx}"},
                    "source": {"component": "kubelet", "host": "n1"}, "message": " Pulled image \n",
                    "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 4}),
                json!([
                    "60s",
                    "Normal",
                    "Pulled",
                    "pod/web",
                    "spec.containers{nginx}",
                    "kubelet, n1",
                    "Pulled image",
                    "10m",
                    4,
                    "web.17a"
                ]),
            ),
            (
                json!({"metadata": {"name": "e"}, "type": "Warning", "reason": "FailedScheduling",
                    "involvedObject": {"kind": "Pod", "name": "web"}, "reportingComponent": "default-scheduler",
                    "eventTime": ago(300), "series": {"count": 7, "lastObservedTime": ago(30)}}),
                json!([
                    "30s",
                    "Warning",
                    "FailedScheduling",
                    "pod/web",
                    "",
                    "default-scheduler",
                    "",
                    "5m",
                    7,
                    "e"
                ]),
            ),
            (
                json!({"involvedObject": {"kind": "Node"}}),
                json!(["<unknown>", "", "", "node", "", "", "", "<unknown>", 1, ""]),
            ),
        ] {
            check("", "Event", obj, expect);
        }
    }

    #[test]
    fn events_k8s_io() {
        check(
            "events.k8s.io",
            "Event",
            json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled",
                "regarding": {"kind": "Pod", "name": "web"}, "note": "Assigned default/web to n1",
                "reportingController": "default-scheduler", "reportingInstance": "sched-1", "eventTime": ago(120)}),
            json!([
                "2m",
                "Normal",
                "Scheduled",
                "pod/web",
                "",
                "default-scheduler, sched-1",
                "Assigned default/web to n1",
                "2m",
                1,
                "e"
            ]),
        );
    }
}
