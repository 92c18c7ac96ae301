//! Core `v1` Events and `events.k8s.io/v1` Events are one stored resource: an in-process
//! apiserver over a real embedded store, writing through one group and reading, listing,
//! watching, patching and deleting through the other.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use rkube_apiserver::authn::{Authenticator, UserInfo};
use rkube_apiserver::response::Body;
use rkube_apiserver::{ApiServer, Config};
use rkube_store::embedded::EmbeddedStore;
use serde_json::{Value, json};

const CORE: &str = "/api/v1/namespaces/default/events";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

async fn send(
    srv: &Arc<ApiServer>,
    method: &str,
    uri: &str,
    content_type: &str,
    accept: Option<&str>,
    body: Vec<u8>,
) -> http::Response<Body> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, content_type);
    if let Some(a) = accept {
        req = req.header(http::header::ACCEPT, a);
    }
    let req = req.body(Bytes::from(body)).expect("request");
    srv.handle(req, UserInfo::component("events-test")).await
}

async fn call(srv: &Arc<ApiServer>, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    call_as(srv, method, uri, "application/json", None, body).await
}

async fn call_as(
    srv: &Arc<ApiServer>,
    method: &str,
    uri: &str,
    content_type: &str,
    accept: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let resp = send(srv, method, uri, content_type, accept, bytes).await;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {uri}: not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (code, v)
}

/// A watch response read line by line.
struct Watch {
    body: Body,
    buf: Vec<u8>,
}

impl Watch {
    async fn start(srv: &Arc<ApiServer>, uri: &str) -> Watch {
        let resp = send(srv, "GET", uri, "application/json", None, Vec::new()).await;
        assert_eq!(resp.status(), 200, "watch {uri}");
        Watch {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next event, or a failure after a few seconds.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                return serde_json::from_slice(&line).expect("watch line is JSON");
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("a watch event within 5s")
                .expect("watch stream still open")
                .expect("watch frame");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

async fn server(dir: &std::path::Path) -> Arc<ApiServer> {
    let store = EmbeddedStore::open(&dir.join("db")).expect("open store");
    let authn = Authenticator {
        node_token_secret: String::new(),
        service_accounts: None,
    };
    let srv = ApiServer::new(store, authn, Config::default())
        .await
        .expect("apiserver");
    // Field validation and patches walk the real Event schemas.
    srv.openapi_documents().await;
    let (code, body) = call(
        &srv,
        "POST",
        "/api/v1/namespaces",
        Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    srv
}

/// An event as the kubelet writes it: core v1, old style (no eventTime).
fn kubelet_event(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": "default",
                           "name": "web", "uid": "p-1"},
        "reason": "Started", "message": "Started container c", "type": "Normal",
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2026-11-01T10:00:00Z", "lastTimestamp": "2026-11-01T10:00:00Z",
        "count": 1, "reportingComponent": "kubelet", "reportingInstance": "n1",
    })
}

/// An event as an events.k8s.io/v1 recorder writes it.
fn recorder_event(name: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "eventTime": "2026-11-01T10:00:00.000000Z",
        "reportingController": "example.com/operator", "reportingInstance": "operator-0",
        "action": "Reconcile", "reason": "Synced", "type": "Warning",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default",
                      "name": "api"},
        "note": "synced the deployment",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_storage_two_views() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;

    // Watches through both groups, started before any write.
    let mut events_watch = Watch::start(&srv, &format!("{EVENTS}?watch=true")).await;
    let mut core_watch = Watch::start(&srv, &format!("{CORE}?watch=true")).await;

    // Written as core v1, read as events.k8s.io/v1.
    let (code, body) = call(&srv, "POST", CORE, Some(kubelet_event("web.1"))).await;
    assert_eq!(code, 201, "{body}");
    let (code, ev) = call(&srv, "GET", &format!("{EVENTS}/web.1"), None).await;
    assert_eq!(code, 200, "{ev}");
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["kind"], "Event");
    assert_eq!(ev["regarding"]["name"], "web");
    assert_eq!(ev["note"], "Started container c");
    assert_eq!(
        ev["deprecatedSource"],
        json!({"component": "kubelet", "host": "n1"})
    );
    assert_eq!(ev["deprecatedCount"], 1);
    assert_eq!(ev["deprecatedFirstTimestamp"], "2026-11-01T10:00:00Z");
    assert_eq!(ev["reportingController"], "kubelet");
    for core_only in [
        "involvedObject",
        "message",
        "source",
        "count",
        "reportingComponent",
    ] {
        assert!(
            ev.get(core_only).is_none(),
            "{core_only} in the events view"
        );
    }
    assert_eq!(ev["metadata"]["uid"], body["metadata"]["uid"]);
    assert_eq!(
        ev["metadata"]["resourceVersion"],
        body["metadata"]["resourceVersion"]
    );

    let added = events_watch.next().await;
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(added["object"]["regarding"]["name"], "web");
    let added = core_watch.next().await;
    assert_eq!(added["object"]["apiVersion"], "v1");
    assert_eq!(added["object"]["involvedObject"]["name"], "web");

    // Written as events.k8s.io/v1, read as core v1.
    let (code, created) = call(&srv, "POST", EVENTS, Some(recorder_event("api.1"))).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], "events.k8s.io/v1");
    assert_eq!(created["regarding"]["name"], "api");
    let (code, core) = call(&srv, "GET", &format!("{CORE}/api.1"), None).await;
    assert_eq!(code, 200, "{core}");
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["involvedObject"]["kind"], "Deployment");
    assert_eq!(core["message"], "synced the deployment");
    assert_eq!(core["reportingComponent"], "example.com/operator");
    assert_eq!(core["eventTime"], "2026-11-01T10:00:00.000000Z");
    assert!(core.get("regarding").is_none() && core.get("note").is_none());
    let added = core_watch.next().await;
    assert_eq!(added["type"], "ADDED");
    assert_eq!(added["object"]["involvedObject"]["name"], "api");
    let added = events_watch.next().await;
    assert_eq!(added["object"]["note"], "synced the deployment");

    // Lists: both see both, each in its own version.
    let (code, list) = call(&srv, "GET", EVENTS, None).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "EventList");
    assert_eq!(list["apiVersion"], "events.k8s.io/v1");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["apiVersion"] == "events.k8s.io/v1"));
    let (_, list) = call(&srv, "GET", CORE, None).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.get("involvedObject").is_some()));

    // Patched through core v1 (the event correlator bumping count), seen through events.
    let resp = send(
        &srv,
        "PATCH",
        &format!("{CORE}/web.1"),
        "application/merge-patch+json",
        None,
        br#"{"count":2,"lastTimestamp":"2026-11-01T10:05:00Z"}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let modified = events_watch.next().await;
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["deprecatedCount"], 2);
    assert_eq!(
        modified["object"]["deprecatedLastTimestamp"],
        "2026-11-01T10:05:00Z"
    );
    assert_eq!(core_watch.next().await["object"]["count"], 2);

    // Patched through events.k8s.io: metadata may change; the event itself may not.
    let (code, patched) = call_as(
        &srv,
        "PATCH",
        &format!("{EVENTS}/api.1"),
        "application/merge-patch+json",
        None,
        Some(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"]["team"], "a");
    assert_eq!(patched["note"], "synced the deployment");
    assert_eq!(
        core_watch.next().await["object"]["metadata"]["labels"]["team"],
        "a"
    );
    events_watch.next().await;
    let (code, status) = call_as(
        &srv,
        "PATCH",
        &format!("{EVENTS}/api.1"),
        "application/merge-patch+json",
        None,
        Some(json!({"note": "rewritten"})),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Event.events.k8s.io \"api.1\" is invalid: message: Invalid value: \"rewritten\": field is immutable"
    );

    // Deleted through events.k8s.io, gone from core.
    let (code, deleted) = call(&srv, "DELETE", &format!("{EVENTS}/web.1"), None).await;
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["apiVersion"], "events.k8s.io/v1");
    let (code, _) = call(&srv, "GET", &format!("{CORE}/web.1"), None).await;
    assert_eq!(code, 404);
    let gone = core_watch.next().await;
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(gone["object"]["apiVersion"], "v1");
    assert_eq!(gone["object"]["metadata"]["name"], "web.1");
    let gone = events_watch.next().await;
    assert_eq!(gone["type"], "DELETED");
    assert_eq!(gone["object"]["regarding"]["name"], "web");
    let (code, status) = call(&srv, "GET", &format!("{EVENTS}/web.1"), None).await;
    assert_eq!(code, 404);
    assert_eq!(
        status["message"],
        "events.events.k8s.io \"web.1\" not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_selectors_per_view() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    for (uri, body) in [
        (CORE, kubelet_event("web.1")),
        (EVENTS, recorder_event("api.1")),
    ] {
        let (code, body) = call(&srv, "POST", uri, Some(body)).await;
        assert_eq!(code, 201, "{body}");
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (uri, selector, want) in [
        (CORE, "involvedObject.name=web", vec!["web.1"]),
        (CORE, "involvedObject.kind=Deployment", vec!["api.1"]),
        (CORE, "reportingComponent=kubelet", vec!["web.1"]),
        (CORE, "source=kubelet", vec!["web.1"]),
        (EVENTS, "regarding.name=api", vec!["api.1"]),
        (EVENTS, "regarding.kind=Pod,type=Normal", vec!["web.1"]),
        (
            EVENTS,
            "reportingController=example.com/operator",
            vec!["api.1"],
        ),
        (EVENTS, "reason!=Synced", vec!["web.1"]),
        (EVENTS, "metadata.name=api.1", vec!["api.1"]),
    ] {
        let (code, list) = call(
            &srv,
            "GET",
            &format!("{uri}?fieldSelector={selector}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{uri} {selector}: {list}");
        assert_eq!(names(&list), want, "{uri} {selector}");
    }
    // As upstream, each group accepts its own spelling only.
    for (uri, selector) in [
        (EVENTS, "involvedObject.name"),
        (EVENTS, "reportingComponent"),
        (CORE, "regarding.name"),
    ] {
        let (code, status) = call(
            &srv,
            "GET",
            &format!("{uri}?fieldSelector={selector}=x"),
            None,
        )
        .await;
        assert_eq!(code, 400, "{uri} {selector}");
        assert_eq!(
            status["message"],
            format!("field label not supported: {selector}")
        );
    }
    // A watch through events.k8s.io with a regarding.* selector.
    let mut watch = Watch::start(
        &srv,
        &format!("{EVENTS}?watch=true&fieldSelector=regarding.name=web"),
    )
    .await;
    let first = watch.next().await;
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "web.1");
    let mut second = kubelet_event("web.2");
    second["involvedObject"]["name"] = json!("other");
    let (code, _) = call(&srv, "POST", CORE, Some(second)).await;
    assert_eq!(code, 201);
    let (code, _) = call(&srv, "POST", CORE, Some(kubelet_event("web.3"))).await;
    assert_eq!(code, 201);
    let next = watch.next().await;
    assert_eq!(
        next["object"]["metadata"]["name"], "web.3",
        "web.2 filtered out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_k8s_io_create_validation() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let mut ev = recorder_event("bad");
    let m = ev.as_object_mut().unwrap();
    m.remove("eventTime");
    m.insert("deprecatedCount".into(), json!(3));
    let (code, status) = call(&srv, "POST", EVENTS, Some(ev)).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Event.events.k8s.io \"bad\" is invalid: [eventTime: Required value, count: Invalid value: \"\": needs to be unset]"
    );
    let mut ev = recorder_event("bad");
    ev["reportingController"] = json!("");
    ev["reportingInstance"] = json!("");
    let (code, status) = call(&srv, "POST", EVENTS, Some(ev)).await;
    assert_eq!(code, 422, "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("reportingController: Required value"),
        "{message}"
    );
    assert!(
        message.contains("reportingInstance: Required value"),
        "{message}"
    );
    // The same legacy event is fine through core v1 and refused through events.k8s.io/v1.
    let mut legacy = kubelet_event("legacy");
    let (code, _) = call(&srv, "POST", CORE, Some(legacy.clone())).await;
    assert_eq!(code, 201);
    legacy["metadata"]["name"] = json!("legacy2");
    let as_v1 = rkube_apiserver::conversion::core_to_events_v1(legacy);
    let (code, status) = call(&srv, "POST", EVENTS, Some(as_v1)).await;
    assert_eq!(code, 422, "{status}");
    // Core v1 keeps upstream's legacy check of the namespaces.
    let mut wrong = kubelet_event("wrong");
    wrong["involvedObject"]["namespace"] = json!("elsewhere");
    let (code, status) = call(&srv, "POST", CORE, Some(wrong)).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Event \"wrong\" is invalid: involvedObject.namespace: Invalid value: \"elsewhere\": does not match event.namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_keep_upstream_columns() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path()).await;
    let (code, _) = call(&srv, "POST", CORE, Some(kubelet_event("web.1"))).await;
    assert_eq!(code, 201);
    let (code, _) = call(&srv, "POST", EVENTS, Some(recorder_event("api.1"))).await;
    assert_eq!(code, 201);
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    for uri in [CORE, EVENTS] {
        let (code, t) = call_as(&srv, "GET", uri, "application/json", Some(table), None).await;
        assert_eq!(code, 200, "{t}");
        assert_eq!(t["kind"], "Table");
        let all: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        let cols: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            cols,
            ["Last Seen", "Type", "Reason", "Object", "Message"],
            "{uri}"
        );
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "{uri}");
        // The same cells through both groups: one object, two views.
        let cells = |name: &str| -> Vec<Value> {
            let row = rows
                .iter()
                .find(|r| r["object"]["metadata"]["name"] == name)
                .unwrap();
            ["Type", "Reason", "Object", "Message", "Count"]
                .iter()
                .map(|c| row["cells"][all.iter().position(|n| n == c).unwrap()].clone())
                .collect()
        };
        assert_eq!(
            cells("web.1"),
            [
                json!("Normal"),
                json!("Started"),
                json!("pod/web"),
                json!("Started container c"),
                json!(1)
            ],
            "{uri}"
        );
        assert_eq!(
            cells("api.1"),
            [
                json!("Warning"),
                json!("Synced"),
                json!("deployment/api"),
                json!("synced the deployment"),
                json!(1)
            ],
            "{uri}"
        );
    }
}
