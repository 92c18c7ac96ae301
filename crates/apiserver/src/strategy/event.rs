//! Events: core `v1` Events and `events.k8s.io/v1` Events, one stored resource (see
//! [`crate::conversion`]). Validation is upstream's `ValidateEventCreate` /
//! `ValidateEventUpdate` (`pkg/apis/core/validation/events.go`), run on the core form with
//! the version of the request: every write passes the legacy checks; writes through
//! `events.k8s.io/v1` also pass the strict ones (eventTime, type, series, no deprecated
//! fields on create; most fields immutable on update). Field paths in messages are the core
//! names, as upstream reports them.

use rkube_core::validation::{self, FieldError};
use serde_json::{Value, json};

use super::Strategy;
use crate::conversion::events_v1_to_core;

/// Longest `reportingInstance`.
const REPORTING_INSTANCE_LENGTH_LIMIT: usize = 128;
/// Longest `action`.
const ACTION_LENGTH_LIMIT: usize = 128;
/// Longest `reason`.
const REASON_LENGTH_LIMIT: usize = 128;
/// Longest `message` (`note`).
const NOTE_LENGTH_LIMIT: usize = 1024;

/// Which API a write came through: the checks differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestVersion {
    /// Core `v1`: legacy checks only, for backwards compatibility.
    CoreV1,
    /// `events.k8s.io/v1`: legacy plus strict checks.
    EventsV1,
}

/// Core `v1` Events.
pub struct CoreEvent;

impl Strategy for CoreEvent {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_create(obj, RequestVersion::CoreV1)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_update(new, old, RequestVersion::CoreV1)
    }
}

/// `events.k8s.io/v1` Events: objects arrive in that version and are checked in core form.
pub struct EventsV1Event;

impl Strategy for EventsV1Event {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_create(&events_v1_to_core(obj.clone()), RequestVersion::EventsV1)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        validate_update(
            &events_v1_to_core(new.clone()),
            &events_v1_to_core(old.clone()),
            RequestVersion::EventsV1,
        )
    }
}

/// Upstream's `ValidateEventCreate` over a core-form Event (object metadata is checked by the
/// caller for every kind).
pub fn validate_create(event: &Value, version: RequestVersion) -> Vec<FieldError> {
    let mut errs = legacy_validate(event);
    if version == RequestVersion::CoreV1 {
        return errs;
    }
    errs.extend(validate_series(event));
    if is_zero(event.get("eventTime")) {
        errs.push(FieldError::required("eventTime", ""));
    }
    let type_ = str_of(event, "type");
    if type_ != "Normal" && type_ != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            json!(""),
            &format!("has invalid value: {type_}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp", "count"] {
        if !is_zero(event.get(field)) {
            errs.push(FieldError::invalid(field, json!(""), "needs to be unset"));
        }
    }
    if !str_of(event, "/source/component").is_empty() || !str_of(event, "/source/host").is_empty() {
        errs.push(FieldError::invalid(
            "source",
            json!(""),
            "needs to be unset",
        ));
    }
    errs
}

/// Upstream's `ValidateEventUpdate` over core-form Events (metadata update rules are checked
/// by the caller for every kind).
pub fn validate_update(new: &Value, old: &Value, version: RequestVersion) -> Vec<FieldError> {
    let mut errs = legacy_validate(new);
    if version == RequestVersion::CoreV1 {
        return errs;
    }
    if normalised(new.get("series")) != normalised(old.get("series")) {
        errs.extend(validate_series(new));
    }
    for field in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    ] {
        if normalised(new.get(field)) != normalised(old.get(field)) {
            // Upstream's internal field is `reportingController`; that is the name it reports.
            let path = if field == "reportingComponent" {
                "reportingController"
            } else {
                field
            };
            errs.push(FieldError::invalid(
                path,
                new.get(field).cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    }
    errs
}

/// Upstream's `legacyValidateEvent`: namespaces agree; events with an eventTime (new-style)
/// name their reporter, action and reason within length limits.
fn legacy_validate(event: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let namespace = rkube_core::meta::namespace(event);
    let involved_ns = str_of(event, "/involvedObject/namespace");
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            json!(involved_ns),
            "does not match event.namespace",
        )
    };
    if is_zero(event.get("eventTime")) {
        // Old-style events: an event about a cluster-scoped object lives in "" or "default".
        let agrees = if involved_ns.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved_ns
        };
        if !agrees {
            errs.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(mismatch());
        }
        let controller = str_of(event, "reportingComponent");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        for msg in validation::qualified_name(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                json!(controller),
                &msg,
            ));
        }
        for (field, limit) in [
            ("reportingInstance", REPORTING_INSTANCE_LENGTH_LIMIT),
            ("action", ACTION_LENGTH_LIMIT),
            ("reason", REASON_LENGTH_LIMIT),
        ] {
            let value = str_of(event, field);
            if value.is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if value.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    json!(""),
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if str_of(event, "message").len() > NOTE_LENGTH_LIMIT {
            errs.push(FieldError::invalid(
                "message",
                json!(""),
                &format!("can have at most {NOTE_LENGTH_LIMIT} characters"),
            ));
        }
    }
    if !namespace.is_empty() {
        for msg in validation::dns1123_subdomain(namespace) {
            errs.push(FieldError::invalid("namespace", json!(namespace), &msg));
        }
    }
    errs
}

/// Upstream's `validateV1EventSeries`: a series has been seen at least twice, and when last.
fn validate_series(event: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(series) = event.get("series").filter(|s| !s.is_null()) else {
        return errs;
    };
    if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
        errs.push(FieldError::invalid(
            "series.count",
            json!(""),
            "should be at least 2",
        ));
    }
    if is_zero(series.get("lastObservedTime")) {
        errs.push(FieldError::required("series.lastObservedTime", ""));
    }
    errs
}

/// A string field (a top-level name or a JSON pointer), "" when absent or not a string.
fn str_of<'a>(obj: &'a Value, field: &str) -> &'a str {
    let v = if field.starts_with('/') {
        obj.pointer(field)
    } else {
        obj.get(field)
    };
    v.and_then(Value::as_str).unwrap_or("")
}

/// Whether a field holds its Go zero value (absent, null, "", 0, false or an empty object),
/// which is how upstream's typed objects see an unset field.
fn is_zero(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(b)) => !b,
        Some(Value::Object(m)) => m.values().all(|v| is_zero(Some(v))),
        Some(Value::Array(a)) => a.is_empty(),
    }
}

/// A field's value for comparing old and new as upstream's typed fields compare: every zero
/// value is the same.
fn normalised(v: Option<&Value>) -> Value {
    match v {
        _ if is_zero(v) => Value::Null,
        Some(Value::Object(m)) => Value::Object(
            m.iter()
                .filter(|(_, v)| !is_zero(Some(v)))
                .map(|(k, v)| (k.clone(), normalised(Some(v))))
                .collect(),
        ),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.body()))
            .collect()
    }

    fn new_style() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x", "namespace": "ns"},
            "eventTime": "2026-11-01T10:00:00.000000Z",
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
            "action": "Reconcile", "reason": "Synced", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "ns"},
            "note": "done",
        })
    }

    #[test]
    fn a_complete_events_v1_event_is_valid() {
        assert!(EventsV1Event.validate(&new_style()).is_empty());
    }

    #[test]
    fn events_v1_create_requires_event_time_and_reporter() {
        let mut ev = new_style();
        for k in ["eventTime", "reportingController", "action"] {
            ev.as_object_mut().unwrap().remove(k);
        }
        let errs = messages(&EventsV1Event.validate(&ev));
        // Without eventTime the legacy checks treat it as an old-style event; the strict
        // checks still demand eventTime.
        assert_eq!(errs, ["eventTime: Required value"]);
        let mut ev = new_style();
        ev["reportingController"] = json!("");
        ev["action"] = json!("a".repeat(129));
        let errs = messages(&EventsV1Event.validate(&ev));
        assert!(errs.contains(&"reportingController: Required value".to_string()));
        assert!(
            errs.contains(
                &"action: Invalid value: \"\": can have at most 128 characters".to_string()
            )
        );
    }

    #[test]
    fn events_v1_create_refuses_deprecated_fields_and_odd_types() {
        let mut ev = new_style();
        ev["deprecatedCount"] = json!(2);
        ev["deprecatedSource"] = json!({"component": "kubelet"});
        ev["deprecatedFirstTimestamp"] = json!("2026-11-01T10:00:00Z");
        ev["type"] = json!("Info");
        ev["series"] = json!({"count": 1});
        let errs = messages(&EventsV1Event.validate(&ev));
        assert_eq!(
            errs,
            [
                "series.count: Invalid value: \"\": should be at least 2",
                "series.lastObservedTime: Required value",
                "type: Invalid value: \"\": has invalid value: Info",
                "firstTimestamp: Invalid value: \"\": needs to be unset",
                "count: Invalid value: \"\": needs to be unset",
                "source: Invalid value: \"\": needs to be unset",
            ]
        );
    }

    #[test]
    fn legacy_events_pass_through_core_v1() {
        let ev = json!({
            "metadata": {"name": "a", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"},
            "reason": "NodeReady", "type": "Normal",
            "source": {"component": "kubelet"}, "count": 1,
        });
        assert!(CoreEvent.validate(&ev).is_empty());
        let mut wrong_ns = ev.clone();
        wrong_ns["metadata"]["namespace"] = json!("team-a");
        wrong_ns["involvedObject"]["namespace"] = json!("team-b");
        assert_eq!(
            messages(&CoreEvent.validate(&wrong_ns)),
            ["involvedObject.namespace: Invalid value: \"team-b\": does not match event.namespace"]
        );
        // The same legacy event fails the strict events.k8s.io/v1 checks.
        let as_v1 = crate::conversion::core_to_events_v1(ev);
        assert!(!EventsV1Event.validate(&as_v1).is_empty());
    }

    #[test]
    fn events_v1_update_keeps_fields_immutable() {
        let old = new_style();
        let mut new = old.clone();
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(EventsV1Event.validate_update(&new, &old).is_empty());
        new["note"] = json!("changed");
        new["reportingController"] = json!("other");
        assert_eq!(
            messages(&EventsV1Event.validate_update(&new, &old)),
            [
                "message: Invalid value: \"changed\": field is immutable",
                "reportingController: Invalid value: \"other\": field is immutable",
            ]
        );
        // Core v1 updates (the event correlator bumping count) stay free.
        let core_old = events_v1_to_core(old);
        let mut core_new = core_old.clone();
        core_new["message"] = json!("changed");
        assert!(CoreEvent.validate_update(&core_new, &core_old).is_empty());
    }

    #[test]
    fn zero_values_compare_equal() {
        assert_eq!(normalised(Some(&json!({"a": "", "b": 0}))), Value::Null);
        assert_eq!(normalised(None), normalised(Some(&json!(null))));
        assert_ne!(normalised(Some(&json!({"a": "x"}))), Value::Null);
    }
}
