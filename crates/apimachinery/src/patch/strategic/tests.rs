use serde_json::{Value, json};

use super::*;
use crate::testschemas::{k8s, r};

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "tier": "fe"},
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}\n"
            },
            "finalizers": ["a", "b"]
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["-g", "daemon off;"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}]
                        },
                        {"name": "sidecar", "image": "busybox"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    })
}

/// Applies `patch` to the Deployment above and checks the listed JSON pointers.
fn check(patch: Value, expect: &[(&str, Value)]) {
    let schemas = k8s();
    let out = strategic_merge_patch(&deployment(), &patch, &r("Deployment"), &schemas)
        .unwrap_or_else(|e| panic!("{patch}: {e}"));
    for (ptr, want) in expect {
        // `null` stands for "absent".
        let want = Some(want).filter(|w| !w.is_null());
        assert_eq!(out.pointer(ptr), want, "{ptr} after {patch}\n{out:#}");
    }
}

fn check_err(patch: Value, msg: &str) {
    let schemas = k8s();
    let e = strategic_merge_patch(&deployment(), &patch, &r("Deployment"), &schemas).unwrap_err();
    assert_eq!(e.to_string(), msg);
}

#[test]
fn kubectl_apply_changes_image_and_replicas() {
    check(
        json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"}},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.27", "name": "nginx"}]
                }}
            }
        }),
        &[
            ("/spec/replicas", json!(3)),
            (
                "/metadata/annotations",
                json!({
                    "deployment.kubernetes.io/revision": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}\n"
                }),
            ),
            (
                "/spec/template/spec/containers",
                json!([
                    {
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["-g", "daemon off;"],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]
                    },
                    {"name": "sidecar", "image": "busybox"}
                ]),
            ),
        ],
    );
}

#[test]
fn kubectl_apply_removes_a_container_and_a_label() {
    check(
        json!({
            "metadata": {"labels": {"tier": null}},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}]
            }}}
        }),
        &[
            ("/metadata/labels", json!({"app": "web"})),
            ("/spec/template/spec/containers/0/name", json!("nginx")),
            ("/spec/template/spec/containers/1", Value::Null),
        ],
    );
    // Without the sidecar at index 1 the pointer above is absent: check the length too.
    let schemas = k8s();
    let out = strategic_merge_patch(
        &deployment(),
        &json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}}}),
        &r("Deployment"),
        &schemas,
    )
    .unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn lists() {
    // New container appended, nested lists (env: new, ports: merged by containerPort).
    check(
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 443, "protocol": "TCP"}]},
            {"name": "logger", "image": "fluentd"}
        ]}}}}),
        &[
            (
                "/spec/template/spec/containers/0/env",
                json!([{"name": "A", "value": "1"}]),
            ),
            (
                "/spec/template/spec/containers/0/ports",
                // Without `$setElementOrder`, patch items go before server-only ones (as upstream).
                json!([{"containerPort": 443, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}]),
            ),
            (
                "/spec/template/spec/containers/1",
                json!({"name": "logger", "image": "fluentd"}),
            ),
            ("/spec/template/spec/containers/2/name", json!("sidecar")),
        ],
    );
    // Atomic lists are replaced.
    check(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "args": ["-v"]}]}}}}),
        &[("/spec/template/spec/containers/0/args", json!(["-v"]))],
    );
    // Scalar merge lists: union, deletions, ordering.
    check(
        json!({"metadata": {"finalizers": ["c", "a"]}}),
        &[("/metadata/finalizers", json!(["c", "a", "b"]))],
    );
    check(
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["z"]}}),
        &[("/metadata/finalizers", json!(["z", "b"]))],
    );
    check(
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
        &[("/metadata/finalizers", json!(["b", "a"]))],
    );
    check(
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "b"], "$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]}}),
        &[("/metadata/finalizers", json!(["c", "b"]))],
    );
    // $setElementOrder reorders merged items; server-only items keep their relative place.
    check(
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
            "containers": [{"name": "sidecar", "image": "busybox:2"}]
        }}}}),
        &[
            (
                "/spec/template/spec/containers/0",
                json!({"name": "sidecar", "image": "busybox:2"}),
            ),
            ("/spec/template/spec/containers/1/name", json!("nginx")),
        ],
    );
    check(
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "new"}, {"name": "sidecar"}],
            "containers": [{"name": "new", "image": "x"}]
        }}}}),
        &[(
            "/spec/template/spec/containers",
            json!([
                {"name": "new", "image": "x"},
                {"name": "nginx", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent", "args": ["-g", "daemon off;"], "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "busybox"}
            ]),
        )],
    );
    // `$patch: replace` as a list item replaces the whole list.
    check(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "i"}, {"$patch": "replace"}]}}}}),
        &[(
            "/spec/template/spec/containers",
            json!([{"name": "only", "image": "i"}]),
        )],
    );
}

#[test]
fn map_directives() {
    check(
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        &[("/spec/strategy", json!({"type": "Recreate"}))],
    );
    check(
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
        }}}}),
        &[(
            "/spec/template/spec/volumes",
            json!([{"name": "data", "configMap": {"name": "cfg"}}]),
        )],
    );
    check(
        json!({"spec": {"template": {"metadata": {"labels": {"$patch": "replace", "x": "y"}}}}}),
        &[("/spec/template/metadata/labels", json!({"x": "y"}))],
    );
    check(
        json!({"spec": {"strategy": {"$patch": "delete"}}}),
        &[("/spec/strategy", json!({}))],
    );
    check_err(
        json!({"spec": {"strategy": {"$patch": "frob"}}}),
        "unknown patch type: frob in map: {\"$patch\":\"frob\"}",
    );
    check_err(
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        "invalid patch format of retainKeys",
    );
    check_err(
        json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        "map: {\"image\":\"x\"} does not contain declared merge key: name",
    );
}

#[test]
fn service_ports_and_selector() {
    let schemas = k8s();
    let live = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {
            "clusterIP": "10.0.0.10",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        }
    });
    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 80}, {"port": 443}],
        "ports": [{"port": 80, "targetPort": "http"}, {"name": "https", "port": 443, "targetPort": 8443}],
        "selector": {"app": null, "name": "web"}
    }});
    let out = strategic_merge_patch(&live, &patch, &r("Service"), &schemas).unwrap();
    assert_eq!(
        out["spec"],
        json!({
            "clusterIP": "10.0.0.10",
            "selector": {"name": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443}
            ]
        })
    );
}

#[test]
fn unknown_schema_behaves_like_merge_patch() {
    let schemas = Schemas::new();
    for (doc, patch) in [
        (
            json!({"a": {"b": 1, "c": [1, 2]}}),
            json!({"a": {"b": null, "c": [3], "d": {"e": null, "f": 1}}}),
        ),
        (
            json!({"list": [{"name": "a"}]}),
            json!({"list": [{"name": "b"}]}),
        ),
        (json!({"x": 1}), json!({"x": {"y": 2}})),
    ] {
        assert_eq!(
            strategic_merge_patch(&doc, &patch, &Schema::Any, &schemas).unwrap(),
            crate::patch::merge_patch(&doc, &patch),
            "{patch}"
        );
    }
    // A pod created from nothing by a patch: directives never leak into the result.
    let out = strategic_merge_patch(
        &json!({}),
        &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "x", "env": null}]}}),
        &r("Pod"),
        &k8s(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"spec": {"containers": [{"name": "a", "image": "x"}]}})
    );
}
