//! Property tests: patching and selector parsing never panic, whatever the input.
//!
//! Bounded case counts keep this in the seconds range; raise `PROPTEST_CASES` locally to dig
//! deeper.

use std::collections::BTreeMap;

use proptest::prelude::*;
use rkube_apimachinery::fields;
use rkube_apimachinery::labels;
use rkube_apimachinery::patch::{json_patch, merge_patch, strategic_merge_patch};
use rkube_apimachinery::schema::{ListPatch, ListType, ScalarType, Schema, Schemas};
use serde_json::{Map, Value, json};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Keys that hit the interesting paths: patch directives, Kubernetes fields, merge keys.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "metadata", "name", "labels", "spec", "containers", "image", "ports",
            "containerPort", "env", "value", "finalizers", "template", "$patch",
            "$retainKeys", "$setElementOrder/containers", "$setElementOrder/finalizers",
            "$deleteFromPrimitiveList/finalizers", "$setElementOrder/ports",
            "$deleteFromPrimitiveList/containers", "op", "path", "from", "data",
        ])
        .prop_map(String::from),
        1 => "[a-z$/~0-9]{0,6}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "replace",
            "delete",
            "merge",
            "add",
            "remove",
            "move",
            "copy",
            "test",
            "/",
            "/spec",
            "/spec/containers/0",
            "/spec/containers/-",
            "/metadata/labels/a~1b",
            "/a/~2",
            "",
            "a",
            "nginx",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,8}".prop_map(Value::String),
    ]
}

/// Arbitrary JSON, biased towards Kubernetes-shaped keys and patch vocabulary.
fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON patch document: mostly a list of operation-shaped objects.
fn json_patch_doc() -> impl Strategy<Value = Value> {
    let op = (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "bogus",
        ]),
        prop_oneof![
            prop::sample::select(vec![
                "",
                "/",
                "/spec",
                "/spec/containers",
                "/spec/containers/0",
                "/spec/containers/-",
                "/spec/containers/99",
                "/spec/containers/-1",
                "/spec/containers/01",
                "/metadata/labels/a~1b",
                "/metadata/labels/~2",
                "/metadata/name",
                "spec",
                "/a/b/c/d",
            ])
            .prop_map(String::from),
            "(/[a-z0-9~-]{0,4}){0,4}",
        ],
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(op, path, value, from)| {
            let mut m = Map::new();
            m.insert("op".into(), json!(op));
            m.insert("path".into(), json!(path));
            if from {
                m.insert(
                    "from".into(),
                    json!(path.rsplit_once('/').map_or("", |x| x.0)),
                );
            }
            m.insert("value".into(), value);
            Value::Object(m)
        });
    prop_oneof![
        4 => prop::collection::vec(op, 0..6).prop_map(Value::Array),
        1 => json_value(),
    ]
}

fn string() -> Schema {
    Schema::Scalar(ScalarType::String)
}

fn obj(fields: &[(&str, Schema)]) -> Schema {
    Schema::Object {
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        preserve_unknown: false,
    }
}

fn keyed(items: Schema, key: &str) -> Schema {
    Schema::List {
        items: Box::new(items),
        patch: ListPatch::Merge {
            key: Some(key.into()),
            retain_keys: false,
        },
        list_type: ListType::Map {
            keys: vec![key.into()],
        },
    }
}

/// A small Pod-like schema with merge-keyed lists, a set of scalars, a map and a
/// self-referencing definition.
fn schemas() -> (Schema, Schemas) {
    let mut s = Schemas::new();
    s.insert(
        "Container",
        obj(&[
            ("name", string()),
            ("image", string()),
            (
                "ports",
                keyed(
                    obj(&[("containerPort", Schema::Scalar(ScalarType::Integer))]),
                    "containerPort",
                ),
            ),
            (
                "env",
                keyed(obj(&[("name", string()), ("value", string())]), "name"),
            ),
        ]),
    );
    s.insert("Loop", Schema::Ref("Loop".into()));
    s.insert(
        "Root",
        obj(&[
            (
                "metadata",
                obj(&[
                    ("name", string()),
                    (
                        "labels",
                        Schema::Map {
                            values: Box::new(string()),
                        },
                    ),
                    (
                        "finalizers",
                        Schema::List {
                            items: Box::new(string()),
                            patch: ListPatch::Merge {
                                key: None,
                                retain_keys: false,
                            },
                            list_type: ListType::Set,
                        },
                    ),
                ]),
            ),
            (
                "spec",
                obj(&[
                    ("containers", keyed(Schema::Ref("Container".into()), "name")),
                    (
                        "template",
                        Schema::List {
                            items: Box::new(Schema::Any),
                            patch: ListPatch::Merge {
                                key: Some("name".into()),
                                retain_keys: true,
                            },
                            list_type: ListType::Atomic,
                        },
                    ),
                    ("loop", Schema::Ref("Loop".into())),
                ]),
            ),
            ("data", Schema::Any),
        ]),
    );
    (Schema::Ref("Root".into()), s)
}

fn pod() -> Value {
    json!({
        "metadata": {"name": "p", "labels": {"a": "b"}, "finalizers": ["x", "y"]},
        "spec": {"containers": [
            {"name": "c", "image": "nginx", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
            {"name": "d", "image": "busybox"}
        ]},
        "data": {"k": [1, 2, {"z": null}]}
    })
}

fn check_label_selector(s: &str) {
    if let Ok(sel) = labels::Selector::parse(s) {
        let m: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let _ = sel.matches_map(&m);
        let _ = sel.matches_json(Some(&json!({"a": "1", "b": 2})));
        // The canonical form parses back to the same selector.
        let canonical = sel.to_string();
        let again = labels::Selector::parse(&canonical);
        assert_eq!(
            again.as_ref().ok(),
            Some(&sel),
            "{s:?} -> {canonical:?} -> {again:?}"
        );
    }
}

/// Regression test for the lexer loop: `Selector::parse` on a string holding a Unicode
/// whitespace character other than space/tab/CR/LF must return (upstream treats such a
/// character as part of an identifier, so `a\u{b}` is an invalid key) instead of looping.
#[test]
fn label_selector_unicode_whitespace_terminates() {
    for input in ["a\u{b}", "\u{a0}", "app=web,\u{3000}x"] {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = input.to_string();
        std::thread::spawn(move || {
            let _ = tx.send(labels::Selector::parse(&owned).is_ok());
        });
        let res = rx.recv_timeout(std::time::Duration::from_secs(2));
        assert!(
            res.is_ok(),
            "labels::Selector::parse({input:?}) did not return in 2 s"
        );
    }
}

fn doc() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(pod()), 1 => json_value()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn merge_patch_never_panics(doc in doc(), patch in json_value()) {
        let out = merge_patch(&doc, &patch);
        // RFC 7386: a non-object patch replaces the document.
        if !patch.is_object() {
            prop_assert_eq!(out, patch);
        }
    }

    #[test]
    fn json_patch_never_panics(doc in doc(), patch in json_patch_doc()) {
        let res = json_patch(&doc, &patch);
        if !patch.is_array() {
            prop_assert!(res.is_err(), "a non-list JSON patch was accepted: {patch}");
        }
        if patch.as_array().is_some_and(Vec::is_empty) {
            prop_assert_eq!(res.unwrap(), doc);
        }
    }

    #[test]
    fn strategic_merge_patch_never_panics(doc in doc(), patch in json_value()) {
        let (root, schemas) = schemas();
        let res = strategic_merge_patch(&doc, &patch, &root, &schemas);
        if !patch.is_object() {
            prop_assert!(res.is_err(), "a non-object strategic patch was accepted: {patch}");
        }
        // Against an unknown schema too.
        let _ = strategic_merge_patch(&doc, &patch, &Schema::Any, &schemas);
        let _ = strategic_merge_patch(&doc, &patch, &Schema::Ref("Loop".into()), &schemas);
    }

    #[test]
    fn strategic_merge_patch_list_directives_never_panic(
        patch in prop::collection::vec(
            (key(), prop_oneof![json_value(), Just(json!([{"$patch": "delete", "name": "c"}])),
             Just(json!([{"$patch": "replace"}])), Just(json!({"$patch": "delete"}))]),
            0..6,
        ),
        spec_patch in json_value(),
    ) {
        let (root, schemas) = schemas();
        let patch: Map<String, Value> = patch.into_iter().collect();
        let patch = json!({"metadata": Value::Object(patch.clone()), "spec": {"containers": spec_patch, "x": Value::Object(patch)}});
        let _ = strategic_merge_patch(&pod(), &patch, &root, &schemas);
    }

    /// Any string at all, including Unicode whitespace.
    #[test]
    fn label_selector_parse_never_panics(s in prop_oneof![
        ".{0,40}",
        "[a-z0-9./!=<>(), \u{b}\u{c}\u{85}\u{a0}\u{2028}\u{3000}-]{0,40}",
    ]) {
        check_label_selector(&s);
    }

    /// The same over strings without Unicode whitespace (beyond space/tab/CR/LF), which the
    /// lexer handles, so that CI keeps fuzzing the rest of the parser.
    #[test]
    fn label_selector_parse_without_unicode_whitespace_never_panics(s in prop_oneof![
        "[^\\p{White_Space}]{0,40}",
        "[a-z0-9./!=<>(), \t\r\n-]{0,40}",
        "[a-z]{1,5}( (in|notin) \\([a-z, ]{0,10}\\))?(,!?[a-z/.]{1,8}(==?|!=|<|>)?[a-z0-9]{0,4}){0,3}",
    ]) {
        check_label_selector(&s);
    }

    #[test]
    fn label_selector_from_json_never_panics(v in json_value(), key in "[a-z./]{0,8}", values in prop::collection::vec(".{0,5}", 0..3)) {
        let _ = labels::Selector::from_label_selector(&v);
        let shaped = json!({
            "matchLabels": {key.clone(): values.first()},
            "matchExpressions": [{"key": key, "operator": v, "values": values}],
        });
        let _ = labels::Selector::from_label_selector(&shaped);
    }

    #[test]
    fn field_selector_parse_never_panics(s in prop_oneof![
        ".{0,40}",
        "[a-z.=!,\\\\ ]{0,40}",
        "(metadata\\.name|spec\\.nodeName|status\\.phase)(=|==|!=)[a-z\\\\,=]{0,6}(,[a-z.]{1,8}!?==?[a-z]{0,4}){0,3}",
    ]) {
        if let Ok(sel) = fields::Selector::parse(&s) {
            let _ = sel.matches(|f| (f == "metadata.name").then(|| "x".to_string()));
            let _ = sel.requires_exact_match("metadata.name");
        }
        let _ = fields::unescape_value(&s);
        let escaped = fields::escape_value(&s);
        prop_assert_eq!(fields::unescape_value(&escaped).ok(), Some(s));
    }
}
