//! Fuzzing the request path: random bodies, content types and methods against the ConfigMap
//! endpoints of an in-process apiserver over a real embedded store. Checks that nothing
//! panics, that every error is a well-formed 4xx `Status`, and that a rejected request never
//! changes the object it targeted.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use rkube_apiserver::authn::{Authenticator, UserInfo};
use rkube_apiserver::{ApiServer, Config};
use rkube_store::embedded::EmbeddedStore;
use serde_json::{Map, Value, json};

const CM: &str = "/api/v1/namespaces/default/configmaps";
const KEEP: &str = "/api/v1/namespaces/default/configmaps/keep";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

async fn call(
    srv: &Arc<ApiServer>,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header(http::header::CONTENT_TYPE, ct);
    }
    let req = req.body(Bytes::from(body)).unwrap();
    let resp = srv.handle(req, UserInfo::component("fuzz")).await;
    let code = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (code, bytes)
}

async fn get_keep(srv: &Arc<ApiServer>) -> Value {
    let (code, body) = call(srv, "GET", KEEP, None, Vec::new()).await;
    assert_eq!(code, 200, "GET keep: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations",
            "data", "binaryData", "immutable", "resourceVersion", "uid", "generateName",
            "finalizers", "ownerReferences", "managedFields", "deletionTimestamp",
            "creationTimestamp", "$patch", "$retainKeys", "op", "path", "value", "from",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z$/.~0-9-]{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "v1",
            "ConfigMap",
            "Secret",
            "apps/v1",
            "keep",
            "default",
            "other",
            "",
            "replace",
            "delete",
            "add",
            "remove",
            "test",
            "/data/a",
            "/metadata/name",
            "/data",
            "1",
            "aGVsbG8=",
            "not base64!",
            "2024-01-01T00:00:00Z",
            "UPPER",
            "-bad-",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn valid_cm(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "fuzz"}},
        "data": {"a": "1", "b": "two"},
    })
}

/// A valid ConfigMap with one member replaced by arbitrary JSON or removed.
fn mutated_cm() -> impl Strategy<Value = Value> {
    let paths = prop::sample::select(vec![
        "/apiVersion",
        "/kind",
        "/metadata",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/labels",
        "/metadata/labels/app",
        "/metadata/annotations",
        "/metadata/resourceVersion",
        "/metadata/uid",
        "/metadata/finalizers",
        "/metadata/ownerReferences",
        "/metadata/managedFields",
        "/metadata/generateName",
        "/metadata/deletionTimestamp",
        "/data",
        "/data/a",
        "/binaryData",
        "/immutable",
        "/spec",
    ]);
    (paths, prop::option::of(json_value()), any::<bool>()).prop_map(|(path, value, keep_name)| {
        let mut v = valid_cm(if keep_name { "keep" } else { "fuzzed" });
        let (parent, last) = path.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() {
            Some(&mut v)
        } else {
            v.pointer_mut(parent)
        };
        if let Some(Value::Object(m)) = parent {
            match value {
                Some(x) => {
                    m.insert(last.to_string(), x);
                }
                None => {
                    m.remove(last);
                }
            }
        }
        v
    })
}

fn json_patch_ops() -> impl Strategy<Value = Value> {
    let op = (
        prop::sample::select(vec![
            "add", "remove", "replace", "move", "copy", "test", "nope",
        ]),
        prop::sample::select(vec![
            "",
            "/",
            "/data",
            "/data/a",
            "/data/zz",
            "/metadata/name",
            "/metadata/namespace",
            "/metadata/resourceVersion",
            "/metadata/uid",
            "/metadata/labels/x~1y",
            "/kind",
            "/apiVersion",
            "/data/-",
            "/immutable",
            "/binaryData/x",
            "/metadata/finalizers/0",
        ]),
        json_value(),
    )
        .prop_map(
            |(op, path, value)| json!({"op": op, "path": path, "value": value, "from": "/data/a"}),
        );
    prop::collection::vec(op, 0..5).prop_map(Value::Array)
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => "[ -~\\n\\t]{0,120}".prop_map(String::into_bytes),
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => mutated_cm().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => json_patch_ops().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        // Truncated valid JSON.
        1 => (mutated_cm(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let b = serde_json::to_vec(&v).unwrap();
            let n = i.index(b.len());
            b[..n].to_vec()
        }),
    ]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        None,
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/yaml"),
        Some("application/merge-patch+json"),
        Some("application/strategic-merge-patch+json"),
        Some("application/json-patch+json"),
        Some("application/apply-patch+yaml"),
        Some("application/vnd.kubernetes.protobuf"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        Some(""),
    ])
}

/// (method, path) pairs: create in the collection, update or patch the pre-existing object.
fn target() -> impl Strategy<Value = (&'static str, String)> {
    prop::sample::select(vec![
        ("POST", CM.to_string()),
        ("PUT", KEEP.to_string()),
        ("PATCH", KEEP.to_string()),
        ("PATCH", format!("{KEEP}?fieldManager=fuzz")),
        ("PATCH", format!("{KEEP}?fieldManager=fuzz&force=true")),
        ("PATCH", format!("{CM}/absent?fieldManager=fuzz")),
        ("PUT", format!("{CM}/absent")),
        ("POST", format!("{CM}?dryRun=All")),
        ("PATCH", format!("{KEEP}?dryRun=All&fieldManager=fuzz")),
        ("POST", format!("{CM}?fieldValidation=Strict")),
        ("PUT", format!("{KEEP}?fieldValidation=Strict")),
    ])
}

fn check_status(code: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    prop_assert!((400..500).contains(&code), "non-4xx error {code}: {text}");
    let status: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("error body is not JSON ({e}): {text}")))?;
    prop_assert_eq!(&status["kind"], "Status", "{}", text);
    prop_assert_eq!(&status["apiVersion"], "v1", "{}", text);
    prop_assert_eq!(&status["status"], "Failure", "{}", text);
    prop_assert_eq!(status["code"].as_u64(), Some(u64::from(code)), "{}", text);
    prop_assert!(
        status["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "empty reason: {}",
        text
    );
    prop_assert!(
        status["message"].as_str().is_some_and(|r| !r.is_empty()),
        "empty message: {}",
        text
    );
    Ok(())
}

/// Every rejected request answers a well-formed 4xx Status and leaves the object unchanged.
#[test]
fn random_requests_get_status_errors_and_lose_no_data() {
    fuzz(false);
}

/// Every accepted write leaves a valid ConfigMap stored (what upstream's typed decoding
/// guarantees: `kind`/`apiVersion` unchanged, `data` a map of strings, no unknown fields).
#[test]
fn accepted_writes_store_valid_configmaps() {
    fuzz(true);
}

fn valid_configmap(v: &Value) -> Result<(), String> {
    let Some(m) = v.as_object() else {
        return Err("not an object".into());
    };
    if v["kind"] != "ConfigMap" || v["apiVersion"] != "v1" {
        return Err("kind/apiVersion changed".into());
    }
    for k in m.keys() {
        if ![
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "binaryData",
            "immutable",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("unknown field {k:?} stored"));
        }
    }
    for field in ["data", "binaryData"] {
        match &v[field] {
            Value::Null => {}
            Value::Object(d) if d.values().all(Value::is_string) => {}
            other => return Err(format!("{field} is not a map of strings: {other}")),
        }
    }
    if !matches!(v["immutable"], Value::Null | Value::Bool(_)) {
        return Err("immutable is not a boolean".into());
    }
    if !v["metadata"].is_object() || v["metadata"]["name"] != "keep" {
        return Err("metadata broken".into());
    }
    Ok(())
}

fn fuzz(check_accepted: bool) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let srv = rt.block_on(async {
        let store = EmbeddedStore::open(&dir.path().join("db")).expect("open store");
        let authn = Authenticator {
            node_token_secret: String::new(),
            service_accounts: None,
        };
        let srv = ApiServer::new(store, authn, Config::default())
            .await
            .expect("apiserver");
        // Wait for the real schemas, so that strategic merge patch and apply walk the real
        // ConfigMap type.
        srv.openapi_documents().await;
        let (code, body) = call(
            &srv,
            "POST",
            "/api/v1/namespaces",
            Some("application/json"),
            br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}"#.to_vec(),
        )
        .await;
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        let (code, body) = call(
            &srv,
            "POST",
            CM,
            Some("application/json"),
            serde_json::to_vec(&valid_cm("keep")).unwrap(),
        )
        .await;
        assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
        srv
    });

    let mut runner = TestRunner::new(PtConfig {
        cases: cases(),
        failure_persistence: None,
        ..PtConfig::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(
        &(target(), content_type(), body()),
        |((method, path), ct, body)| {
            rt.block_on(async {
                let before = get_keep(&srv).await;
                let (code, resp) = call(&srv, method, &path, ct, body.clone()).await;
                let after = get_keep(&srv).await;
                let shown = String::from_utf8_lossy(&body);
                if code >= 400 {
                    check_status(code, &resp)?;
                    prop_assert_eq!(
                        &before,
                        &after,
                        "rejected {} {} ({:?}, body {:?}) -> {} changed the object: {}",
                        method,
                        path,
                        ct,
                        shown,
                        code,
                        String::from_utf8_lossy(&resp)
                    );
                } else {
                    prop_assert!((200..300).contains(&code), "unexpected {code}");
                    let v: Value = serde_json::from_slice(&resp).map_err(|e| {
                        TestCaseError::fail(format!("success body is not JSON ({e})"))
                    })?;
                    if path.contains("dryRun") {
                        prop_assert_eq!(&before, &after, "dry run changed the object");
                    }
                    if check_accepted {
                        prop_assert_eq!(&v["kind"], "ConfigMap", "{}", v);
                        if let Err(why) = valid_configmap(&after) {
                            return Err(TestCaseError::fail(format!(
                                "{method} {path} ({ct:?}, body {shown:?}) -> {code} stored an \
                                 invalid ConfigMap ({why}): {after}"
                            )));
                        }
                    }
                    // Keep the object valid for later cases.
                    if valid_configmap(&after).is_err() {
                        let mut fixed = valid_cm("keep");
                        fixed["metadata"]["resourceVersion"] =
                            after["metadata"]["resourceVersion"].clone();
                        let (code, body) =
                            call(&srv, "PUT", KEEP, None, serde_json::to_vec(&fixed).unwrap())
                                .await;
                        prop_assert_eq!(
                            code,
                            200,
                            "restoring keep: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                }
                Ok(())
            })
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{} cases in {:?}", cases(), started.elapsed());
}
