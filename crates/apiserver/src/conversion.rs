//! Conversion between a served version and the stored form, for resources that are another
//! group's view of the same stored objects.
//!
//! Upstream stores one Event resource (`/registry/events/NS/NAME`) and serves it as core
//! `v1` Events and as `events.k8s.io/v1` Events, converting field by field on the way in and
//! out (`k8s.io/kubernetes/pkg/apis/events/v1/conversion.go`). Here objects are stored in
//! their core `v1` form; a request through `events.k8s.io/v1` sees every object converted to
//! that version, and what it writes is converted back before it is stored. The REST handler
//! works on the request's view throughout (patches, apply, validation, responses, watch
//! events) and crosses to the stored form only where bytes meet the store: [`to_view`] after
//! a read, [`encode`] before a write.

use bytes::Bytes;
use rkube_core::registry::ResourceType;
use serde_json::{Map, Value};

use crate::cache::Entry;

/// Fields renamed between core `v1` Events and `events.k8s.io/v1` Events: (core name,
/// events.k8s.io name). Every other field (`metadata`, `reason`, `type`, `action`,
/// `related`, `eventTime`, `series`, `reportingInstance`) has the same name and shape in both.
pub const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Whether objects of `rt` are converted between the request's version and the stored form.
pub fn converts(rt: &ResourceType) -> bool {
    rt.is_view_of_other_group()
}

/// Whether `rt` is the `events.k8s.io` view of core Events.
fn is_events_k8s_io(rt: &ResourceType) -> bool {
    rt.group == "events.k8s.io" && rt.plural == "events"
}

/// A stored object as the request's version shows it.
pub fn to_view(rt: &ResourceType, obj: Value) -> Value {
    if is_events_k8s_io(rt) {
        core_to_events_v1(obj)
    } else {
        obj
    }
}

/// An object in the request's version as it is stored.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if is_events_k8s_io(rt) {
        events_v1_to_core(obj)
    } else {
        obj
    }
}

/// Serialises `obj` (in the request's version) to the bytes to store, and leaves `obj` as the
/// request's version of what was stored (layout normalised, resourceVersion removed), so the
/// caller can answer with it as it answers with any stored object.
pub fn encode(rt: &ResourceType, obj: &mut Value) -> Bytes {
    if !converts(rt) {
        return crate::codec::encode(obj);
    }
    let mut stored = to_storage(rt, std::mem::take(obj));
    let bytes = crate::codec::encode(&mut stored);
    *obj = to_view(rt, stored);
    bytes
}

/// Appends a cached object, with its resourceVersion, as the request's version shows it.
/// Objects needing no conversion are copied from the stored bytes without being parsed.
pub fn write_entry(rt: &ResourceType, out: &mut Vec<u8>, entry: &Entry) {
    if converts(rt) {
        let view = to_view(rt, entry.object());
        // Serialising a `Value` cannot fail; an empty object keeps the JSON well formed.
        match serde_json::to_vec(&view) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(_) => out.extend_from_slice(b"{}"),
        }
    } else {
        crate::codec::write_with_rv(out, &entry.value, entry.rv);
    }
}

/// A cached object, parsed, with its resourceVersion, as the request's version shows it.
pub fn entry_object(rt: &ResourceType, entry: &Entry) -> Value {
    to_view(rt, entry.object())
}

/// A core `v1` Event as an `events.k8s.io/v1` Event (upstream's
/// `Convert_core_Event_To_v1_Event`): `involvedObject` becomes `regarding`, `message`
/// `note`, `source` `deprecatedSource`, `firstTimestamp`/`lastTimestamp`/`count` their
/// `deprecated…` forms and `reportingComponent` `reportingController`. Field order is kept, so
/// the stored layout (apiVersion, kind, metadata first) survives.
pub fn core_to_events_v1(obj: Value) -> Value {
    rename_fields(obj, "events.k8s.io/v1", |k| {
        EVENT_FIELDS
            .iter()
            .find(|(core, _)| *core == k)
            .map(|(_, events)| *events)
    })
}

/// An `events.k8s.io/v1` Event as a core `v1` Event (upstream's
/// `Convert_v1_Event_To_core_Event`), the inverse of [`core_to_events_v1`].
pub fn events_v1_to_core(obj: Value) -> Value {
    rename_fields(obj, "v1", |k| {
        EVENT_FIELDS
            .iter()
            .find(|(_, events)| *events == k)
            .map(|(core, _)| *core)
    })
}

/// Renames top-level fields in place and sets `apiVersion`. A field of the source version's
/// other name is dropped rather than allowed to collide: it is unknown to the source
/// version's schema, so the request's field validation has already refused or pruned it.
fn rename_fields(
    obj: Value,
    api_version: &str,
    rename: impl Fn(&str) -> Option<&'static str>,
) -> Value {
    let Value::Object(map) = obj else { return obj };
    let targets: Vec<&str> = map.keys().filter_map(|k| rename(k)).collect();
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        match rename(&k) {
            Some(new) => {
                out.insert(new.to_string(), v);
            }
            // A field already carrying a renamed field's new name is the stale duplicate.
            None if targets.contains(&k.as_str()) => {}
            None if k == "apiVersion" => {
                out.insert(k, Value::String(api_version.to_string()));
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    if !out.contains_key("apiVersion") {
        // Keep apiVersion, kind and metadata at the front, as the stored layout has them.
        let mut front = Map::with_capacity(out.len() + 1);
        front.insert("apiVersion".into(), Value::String(api_version.to_string()));
        front.extend(out);
        out = front;
    }
    Value::Object(out)
}

/// Field selector labels of `events.k8s.io/v1` Events and the core Event fields they select
/// on (upstream's `AddFieldLabelConversionsForEvent` of `pkg/apis/events/v1`). The core
/// spellings (`involvedObject.name`…) are refused through this group, as upstream refuses
/// them.
pub const EVENTS_V1_FIELD_LABELS: &[(&str, &str)] = &[
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("source", "source"),
    ("type", "type"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn legacy_core_event() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "uid": "u1"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "default",
                               "name": "web", "uid": "p1", "fieldPath": "spec.containers{c}"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-11-01T10:00:00Z", "lastTimestamp": "2026-11-01T10:05:00Z",
            "count": 3, "eventTime": null,
            "reportingComponent": "kubelet", "reportingInstance": "n1",
        })
    }

    #[test]
    fn core_to_events_v1_renames_every_field() {
        let ev = core_to_events_v1(legacy_core_event());
        assert_eq!(
            ev,
            json!({
                "apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": {"name": "web.1", "namespace": "default", "uid": "u1"},
                "regarding": {"apiVersion": "v1", "kind": "Pod", "namespace": "default",
                              "name": "web", "uid": "p1", "fieldPath": "spec.containers{c}"},
                "reason": "Started", "note": "Started container c", "type": "Normal",
                "deprecatedSource": {"component": "kubelet", "host": "n1"},
                "deprecatedFirstTimestamp": "2026-11-01T10:00:00Z",
                "deprecatedLastTimestamp": "2026-11-01T10:05:00Z",
                "deprecatedCount": 3, "eventTime": null,
                "reportingController": "kubelet", "reportingInstance": "n1",
            })
        );
        // The stored layout's order survives: apiVersion, kind, metadata first.
        let keys: Vec<&String> = ev.as_object().unwrap().keys().take(4).collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "regarding"]);
    }

    #[test]
    fn events_v1_to_core_and_back_is_lossless() {
        let new_style = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "x", "namespace": "ns", "labels": {"a": "b"},
                         "managedFields": [{"manager": "m", "apiVersion": "events.k8s.io/v1"}]},
            "eventTime": "2026-11-01T10:00:00.123456Z",
            "series": {"count": 4, "lastObservedTime": "2026-11-01T10:09:00.000000Z"},
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
            "action": "Reconcile", "reason": "Synced", "type": "Warning",
            "regarding": {"kind": "Node", "name": "n1"},
            "related": {"kind": "Pod", "name": "p", "namespace": "ns"},
            "note": "it happened",
        });
        let core = events_v1_to_core(new_style.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(
            core["involvedObject"],
            json!({"kind": "Node", "name": "n1"})
        );
        assert_eq!(core["message"], "it happened");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert_eq!(core["series"], new_style["series"]);
        assert_eq!(core["related"], new_style["related"]);
        assert_eq!(core["eventTime"], new_style["eventTime"]);
        // managedFields travel verbatim: each entry names the version it was recorded in.
        assert_eq!(core["metadata"], new_style["metadata"]);
        for k in ["regarding", "note", "reportingController"] {
            assert!(core.get(k).is_none(), "{k} left in the core form");
        }
        assert_eq!(core_to_events_v1(core), new_style);
        assert_eq!(
            events_v1_to_core(core_to_events_v1(legacy_core_event())),
            legacy_core_event()
        );
    }

    #[test]
    fn odd_shapes_do_not_panic() {
        assert_eq!(core_to_events_v1(json!(null)), json!(null));
        assert_eq!(
            events_v1_to_core(json!({"kind": "Event", "note": "n", "message": "stale"})),
            json!({"apiVersion": "v1", "kind": "Event", "message": "n"})
        );
    }

    #[test]
    fn only_the_events_view_converts() {
        let reg = rkube_core::registry::Registry::builtin();
        let core = reg.lookup("", "v1", "events").unwrap();
        let events = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        assert!(!converts(core) && converts(events));
        let obj = legacy_core_event();
        assert_eq!(to_view(core, obj.clone()), obj);
        let mut view = to_view(events, obj.clone());
        view["metadata"]["resourceVersion"] = json!("9");
        let bytes = encode(events, &mut view);
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            stored, obj,
            "stored in the core form, without resourceVersion"
        );
        assert_eq!(view, core_to_events_v1(obj));
    }
}
