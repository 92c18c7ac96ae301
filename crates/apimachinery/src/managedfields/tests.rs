use serde_json::{Value, json};

use super::*;
use crate::testschemas::{k8s, r};

const T0: &str = "2026-11-01T00:00:00Z";
const T1: &str = "2026-11-01T00:01:00Z";

fn applied(replicas: i64, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
            }
        }
    })
}

fn run_apply(
    live: &Value,
    cfg: &Value,
    manager: &str,
    force: bool,
    managed: &[ManagedFieldsEntry],
) -> Result<(Value, Vec<ManagedFieldsEntry>), Conflicts> {
    apply(
        live,
        cfg,
        manager,
        "apps/v1",
        force,
        managed,
        T1,
        &r("Deployment"),
        &k8s(),
    )
}

fn fields(e: &ManagedFieldsEntry) -> Value {
    e.fields_v1.clone().unwrap()
}

#[test]
fn field_set_of_applied_config() {
    let set = strip(&to_field_set(
        &applied(3, "nginx", json!({"app": "web"})),
        &r("Deployment"),
        &k8s(),
    ));
    assert_eq!(
        set.to_json(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {"f:matchLabels": {"f:app": {}}},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}}
                    }}}
                }
            }
        })
    );
    // Set lists own each element; atomic lists and empty maps are leaves.
    let pod = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "c", "args": ["x"], "resources": {}}]}});
    assert_eq!(
        to_field_set(&pod, &r("Pod"), &k8s()).to_json(),
        json!({
            "f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:args": {}, "f:name": {}, "f:resources": {}}}}
        })
    );
}

#[test]
fn apply_creates_and_reapplies() {
    let cfg = applied(3, "nginx:1.25", json!({"app": "web"}));
    let (obj, entries) = run_apply(&json!({}), &cfg, "kubectl", false, &[]).unwrap();
    assert_eq!(obj, cfg);
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (
            e.manager.as_str(),
            e.operation.as_str(),
            e.api_version.as_str()
        ),
        ("kubectl", "Apply", "apps/v1")
    );
    assert_eq!(e.time.as_deref(), Some(T1));
    assert_eq!(e.fields_type, "FieldsV1");
    assert!(fields(e)["f:spec"]["f:replicas"].is_object());
    assert!(fields(e).get("f:apiVersion").is_none());
    assert!(fields(e)["f:metadata"].get("f:name").is_none());
    // The JSON form is metav1.ManagedFieldsEntry's.
    let wire = serde_json::to_value(e).unwrap();
    assert_eq!(wire["apiVersion"], "apps/v1");
    assert!(wire["fieldsV1"].is_object());
    assert!(wire.get("subresource").is_none());

    // Re-applying with another image changes it; the applier keeps sole ownership.
    let cfg2 = applied(3, "nginx:1.27", json!({"app": "web"}));
    let (obj2, entries2) = run_apply(&obj, &cfg2, "kubectl", false, &entries).unwrap();
    assert_eq!(
        obj2["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(entries2.len(), 1);
}

#[test]
fn conflicts_with_an_updater() {
    let live = applied(1, "nginx", json!({"app": "web"}));
    let csa = update(
        &json!({}),
        &live,
        "kubectl-client-side-apply",
        "apps/v1",
        &[],
        T0,
        &r("Deployment"),
        &k8s(),
    );
    assert_eq!(csa.len(), 1);
    assert_eq!(csa[0].operation, "Update");

    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let err = run_apply(&live, &cfg, "kubectl", false, &csa).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );

    // Applying the value already there is no conflict: ownership is shared.
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}});
    let (obj, entries) = run_apply(&live, &same, "kubectl", false, &csa).unwrap();
    assert_eq!(obj, live);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].operation, "Apply");
    assert!(entries[1].field_set().contains(&[
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into())
    ]));

    // Forcing takes the field over.
    let (obj, entries) = run_apply(&live, &cfg, "kubectl", true, &csa).unwrap();
    assert_eq!(obj["spec"]["replicas"], 5);
    let replicas = [
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into()),
    ];
    assert!(entries[0].field_set().contains(&replicas));
    assert!(!entries[1].field_set().contains(&replicas));

    // Several conflicts are listed per manager.
    let cfg = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "nginx", "image": "httpd"}]}}}});
    let err = run_apply(&live, &cfg, "kubectl", false, &csa).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn apply_prunes_what_it_stopped_applying() {
    let cfg = applied(3, "nginx", json!({"app": "web", "tier": "fe"}));
    let (obj, entries) = run_apply(&json!({}), &cfg, "kubectl", false, &[]).unwrap();
    let cfg2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 3}});
    let (obj2, entries2) = run_apply(&obj, &cfg2, "kubectl", false, &entries).unwrap();
    assert_eq!(obj2["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(obj2["spec"], json!({"replicas": 3}), "{obj2:#}");
    assert_eq!(entries2.len(), 1);

    // A field another manager also owns survives.
    let other = update(
        &json!({}),
        &json!({"metadata": {"labels": {"tier": "fe"}}}),
        "labeller",
        "apps/v1",
        &[],
        T0,
        &r("Deployment"),
        &k8s(),
    );
    let mut managed = entries.clone();
    managed.extend(other);
    let (obj3, _) = run_apply(&obj, &cfg2, "kubectl", false, &managed).unwrap();
    assert_eq!(
        obj3["metadata"]["labels"],
        json!({"app": "web", "tier": "fe"})
    );
}

#[test]
fn apply_merges_lists_by_key() {
    let live = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "a"}, {"name": "b", "image": "b"}
    ]}}}});
    let cfg = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c"}, {"name": "b", "image": "b2"}]}}}});
    let (obj, _) = run_apply(&live, &cfg, "mgr", false, &[]).unwrap();
    let names: Vec<&str> = obj["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "c", "b"]);
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][2]["image"],
        "b2"
    );
}

#[test]
fn update_moves_changed_fields() {
    let schemas = k8s();
    let created = applied(1, "nginx", json!({"app": "web"}));
    let mut created_meta = created.clone();
    created_meta["metadata"]["uid"] = json!("u1");
    created_meta["metadata"]["resourceVersion"] = json!("5");
    created_meta["status"] = json!({"replicas": 0});
    let e1 = update(
        &Value::Null,
        &created_meta,
        "kubectl-create",
        "apps/v1",
        &[],
        T0,
        &r("Deployment"),
        &schemas,
    );
    assert_eq!(e1.len(), 1);
    let f = fields(&e1[0]);
    assert!(f.get("f:status").is_none());
    assert!(f["f:metadata"].get("f:uid").is_none());
    assert!(f["f:metadata"].get("f:resourceVersion").is_none());
    // A newly added map is owned itself as well as its keys.
    assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));

    let mut scaled = created_meta.clone();
    scaled["spec"]["replicas"] = json!(4);
    let e2 = update(
        &created_meta,
        &scaled,
        "hpa",
        "autoscaling/v1",
        &e1,
        T1,
        &r("Deployment"),
        &schemas,
    );
    assert_eq!(e2.len(), 2);
    let replicas = [
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into()),
    ];
    let create = e2.iter().find(|e| e.manager == "kubectl-create").unwrap();
    let hpa = e2.iter().find(|e| e.manager == "hpa").unwrap();
    assert!(!create.field_set().contains(&replicas));
    assert_eq!(hpa.field_set().paths(), vec![replicas.to_vec()]);
    assert_eq!(hpa.time.as_deref(), Some(T1));
    assert_eq!(create.time.as_deref(), Some(T0));

    // A manager left with nothing is dropped; a no-op update adds no entry.
    let only = update(
        &Value::Null,
        &json!({"spec": {"replicas": 1}}),
        "a",
        "apps/v1",
        &[],
        T0,
        &r("Deployment"),
        &schemas,
    );
    let after = update(
        &json!({"spec": {"replicas": 1}}),
        &json!({"spec": {"replicas": 2}}),
        "b",
        "apps/v1",
        &only,
        T1,
        &r("Deployment"),
        &schemas,
    );
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].manager, "b");
    let noop = update(
        &json!({"spec": {"replicas": 2}}),
        &json!({"spec": {"replicas": 2}}),
        "c",
        "apps/v1",
        &after,
        T1,
        &r("Deployment"),
        &schemas,
    );
    assert_eq!(noop, after);
}

/// The one-walk create path gives exactly what the general comparison gives.
#[test]
fn created_fields_match_the_general_path() {
    let objects = [
        applied(3, "nginx", json!({"app": "web"})),
        applied(1, "nginx", json!({})),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "x", "uid": "u", "generation": 1,
                "annotations": {}, "finalizers": ["a", "b"], "labels": {"k": "v"}},
            "spec": {"template": {"spec": {
                "containers": [
                    {"name": "b", "image": "i", "args": ["x"], "env": [{"name": "E", "value": "1"}],
                     "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                     "resources": {"requests": {"cpu": "1"}, "limits": {}}},
                    {"name": "a", "image": "i"}],
                "volumes": [{"name": "v", "emptyDir": {}}]}}},
            "status": {"replicas": 1}}),
        json!({"metadata": {"name": "only"}}),
        json!({}),
    ];
    for obj in objects {
        let cmp = strip_comparison(compare(&json!({}), &obj, &r("Deployment"), &k8s()));
        let expected = cmp.added.to_json();
        let fast = created_fields(&obj, &r("Deployment"), &k8s()).expect("fast path");
        assert_eq!(Value::Object(fast.clone()), expected, "{obj}");
        // Same key order too: the stored bytes must not depend on the path taken.
        assert_eq!(
            serde_json::to_string(&Value::Object(fast)).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        let entries = update(
            &json!({}),
            &obj,
            "m",
            "apps/v1",
            &[],
            T0,
            &r("Deployment"),
            &k8s(),
        );
        assert_eq!(entries.is_empty(), expected.as_object().unwrap().is_empty());
    }
    // Duplicate keys fall back to the general path.
    let dup =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}});
    assert!(created_fields(&dup, &r("Deployment"), &k8s()).is_none());
}

#[test]
fn entry_into_json_is_its_serialization() {
    let e = ManagedFieldsEntry {
        manager: "m".into(),
        operation: OPERATION_UPDATE.into(),
        api_version: "v1".into(),
        time: Some(T0.into()),
        fields_type: "FieldsV1".into(),
        fields_v1: Some(json!({"f:data": {}})),
        subresource: "status".into(),
    };
    for e in [
        e.clone(),
        ManagedFieldsEntry {
            time: None,
            subresource: String::new(),
            ..e
        },
    ] {
        let expected = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::to_string(&e.into_json()).unwrap(), expected);
    }
}
