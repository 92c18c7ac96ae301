//! Real client libraries against a real `rkube server`: kube (Rust) and the Python
//! `kubernetes` client.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use serde_json::json;
use support::Server;

async fn kube_client(s: &Server) -> kube::Client {
    let kc = Kubeconfig::read_from(s.kubeconfig()).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config from kubeconfig");
    kube::Client::try_from(cfg).expect("kube client")
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "clients-test"}},
        "data": data,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_client() {
    let s = Server::start();
    let client = kube_client(&s).await;

    // List namespaces.
    let nss: Api<Namespace> = Api::all(client.clone());
    let list = nss
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    let names: Vec<String> = list
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.iter().any(|n| n == ns), "{ns} missing from {names:?}");
    }
    assert!(
        list.metadata
            .resource_version
            .is_some_and(|rv| !rv.is_empty())
    );

    // Create.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("first", json!({"a": "1"})))
        .await
        .expect("create configmap");
    assert_eq!(created.metadata.name.as_deref(), Some("first"));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.uid.is_some());
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    // A duplicate create is a 409 AlreadyExists the client decodes.
    match cms
        .create(&PostParams::default(), &cm("first", json!({})))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert_eq!(status.reason, "AlreadyExists", "{status:?}");
        }
        other => panic!("duplicate create: {other:?}"),
    }

    // Watch (Api::watch) from the list's resourceVersion: an object created after the watch
    // started shows up as ADDED.
    let list = cms
        .list(&ListParams::default())
        .await
        .expect("list configmaps");
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .expect("start watch")
        .boxed();
    let created2 = cms
        .create(&PostParams::default(), &cm("second", json!({"b": "2"})))
        .await
        .expect("create second");
    let added = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(ev) = stream.try_next().await.expect("watch stream") {
            match ev {
                WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("second") => return o,
                WatchEvent::Error(e) => panic!("watch error {e:?}"),
                _ => {}
            }
        }
        panic!("watch ended without ADDED second")
    })
    .await
    .expect("ADDED event within 15 s");
    assert_eq!(
        added.metadata.resource_version,
        created2.metadata.resource_version
    );
    assert_eq!(added.data, created2.data);

    // kube::runtime::watcher: the initial list, then live events.
    let mut w = watcher(
        cms.clone(),
        watcher::Config::default().labels("app=clients-test"),
    )
    .boxed();
    let mut seen_init_done = false;
    let mut created_third = false;
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = w.try_next().await.expect("watcher") {
            match ev {
                watcher::Event::InitDone => {
                    seen_init_done = true;
                    cms.create(&PostParams::default(), &cm("third", json!({"c": "3"})))
                        .await
                        .expect("create third");
                    created_third = true;
                }
                watcher::Event::Apply(o) if o.metadata.name.as_deref() == Some("third") => {
                    return o;
                }
                _ => {}
            }
        }
        panic!("watcher ended")
    })
    .await
    .expect("watcher saw third within 20 s");
    assert!(seen_init_done && created_third);
    assert_eq!(found.data.unwrap().get("c").map(String::as_str), Some("3"));

    // Get.
    let got = cms.get("first").await.expect("get");
    assert_eq!(got.data.as_ref().unwrap()["a"], "1");
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );

    // Merge patch.
    let patched = cms
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}, "metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("merge patch");
    let data = patched.data.clone().unwrap();
    assert_eq!(data["a"], "1");
    assert_eq!(data["b"], "2");
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["x"], "y");
    let rv2: u64 = patched
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        rv2 > rv1,
        "patch did not move resourceVersion: {rv1} -> {rv2}"
    );

    // Strategic merge patch (null deletes a key).
    let patched = cms
        .patch(
            "first",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"a": null}})),
        )
        .await
        .expect("strategic patch");
    let data = patched.data.clone().unwrap();
    assert!(!data.contains_key("a"), "{data:?}");
    assert_eq!(data["b"], "2");

    // Delete.
    cms.delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    match cms.get("first").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404, "{status:?}"),
        other => panic!("get after delete: {other:?}"),
    }
    assert!(cms.get_opt("first").await.expect("get_opt").is_none());
    // And kubectl agrees.
    let out = s.ok(&["get", "cm", "-o", "name"]);
    assert!(!out.contains("configmap/first\n"), "{out}");
    assert!(out.contains("configmap/second"), "{out}");
}

/// Server-side apply through kube records the applying manager with operation `Apply`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply() {
    let s = Server::start();
    let client = kube_client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Server-side apply.
    let applied = cms
        .patch(
            "applied",
            &PatchParams::apply("clients-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"},
                "data": {"k": "v"},
            })),
        )
        .await
        .expect("server-side apply");
    assert_eq!(applied.data.as_ref().unwrap()["k"], "v");
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "clients-test"),
        "{managers:?} in {applied:?}"
    );
    let entry = applied
        .metadata
        .managed_fields
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.manager.as_deref() == Some("clients-test"))
        .unwrap();
    assert_eq!(entry.operation.as_deref(), Some("Apply"), "{entry:?}");
    // A second apply by another manager of the same field conflicts (409) unless forced.
    let conflict = cms
        .patch(
            "applied",
            &PatchParams::apply("other-manager"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"},
                "data": {"k": "other"},
            })),
        )
        .await;
    match conflict {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("conflicting apply: {other:?}"),
    }
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("RKUBE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python");
    assert!(
        p.exists(),
        "Python with the `kubernetes` client not found at {}: run scripts/install-test-deps.sh \
         (or set RKUBE_PYTHON)",
        p.display()
    );
    p
}

#[test]
fn python_kubernetes_client() {
    run_python_client(&[]);
}

/// The same script, with bodies as most Python code builds them: `V1Namespace(metadata=...)`
/// without `api_version`/`kind` (upstream fills them in from the URL).
#[test]
fn python_kubernetes_client_without_kind() {
    run_python_client(&["--omit-kind"]);
}

fn run_python_client(args: &[&str]) {
    let py = python();
    let s = Server::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .env("KUBECONFIG", s.kubeconfig())
        .env("HOME", s.dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {} failed ({e}): run scripts/install-test-deps.sh (or set RKUBE_PYTHON)",
                py.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client test failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("PYTHON CLIENT OK"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // What Python created is visible to kubectl.
    let out = s.ok(&["get", "deploy,cm", "-n", "py-test", "-o", "name"]);
    assert!(out.contains("deployment.apps/web"), "{out}");
    assert!(out.contains("configmap/settings"), "{out}");
}
