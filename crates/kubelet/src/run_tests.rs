//! `run` end to end against an in-process apiserver, with the fake runtime.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::pods::fake::{FakeImages, FakeRuntime};
use crate::pods::tests_support::TempDir;

#[path = "../tests/support/mod.rs"]
mod support;

async fn cluster(dir: &std::path::Path) -> kube::Client {
    let namespaces = ["default", "kube-node-lease", "kube-system"];
    let client = support::apiserver(dir, &namespaces).await;
    for ns in namespaces {
        // What the service account and root-CA controllers would create.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), ns);
        let _ = sa
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
            )
            .await;
        let cm: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
        let body = json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "x"}});
        let _ = cm
            .create(
                &PostParams::default(),
                &serde_json::from_value(body).unwrap(),
            )
            .await;
    }
    client
}

fn ca_pem() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

async fn eventually<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..150 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn runs_api_and_static_pods_reports_status_and_deletes() {
    let dir = TempDir::new("run");
    let client = cluster(&dir.0).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = crate::KubeletConfig::new("n1", dir.0.join("data"));
    cfg.kubelet_port = port;
    cfg.bind_address = "127.0.0.1".parse().unwrap();
    cfg.node_ips = vec!["127.0.0.1".parse().unwrap()];
    cfg.client_ca_pem = ca_pem();
    cfg.sync_period = Duration::from_millis(100);
    cfg.file_check_frequency = Duration::from_millis(300);
    cfg.resolv_conf = dir.0.join("resolv.conf");
    std::fs::create_dir_all(&cfg.pod_manifest_path).unwrap();
    std::fs::write(
        cfg.pod_manifest_path.join("static.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stat\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    )
    .unwrap();
    let rt = Arc::new(FakeRuntime::default());
    let images = Arc::new(FakeImages::default());
    // Aborted on drop (before the temp dir goes), even when an assertion fails.
    let kubelet = AbortOnDrop(tokio::spawn(crate::run(
        client.clone(),
        cfg,
        rt.clone(),
        images,
    )));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "busybox:1.36",
            "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
    eventually("web Running", || async {
        let p = pods.get("web").await.unwrap();
        let st = p.status.unwrap_or_default();
        st.phase.as_deref() == Some("Running")
            && st.container_statuses.is_some_and(|c| c[0].ready)
            && st.conditions.is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "PodScheduled" || c.type_ == "Ready")
            })
    })
    .await;
    let env = rt.container_config("web").unwrap().envs;
    assert!(
        env.iter()
            .any(|(k, v)| k == "MY_IP" && v.starts_with("10.42.0.")),
        "{env:?}"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("Started event", || async {
        let evs = events.list(&ListParams::default()).await.unwrap().items;
        evs.iter().any(|e| {
            e.reason.as_deref() == Some("Started")
                && e.involved_object.field_path.as_deref() == Some("spec.containers{web}")
                && e.source.as_ref().and_then(|s| s.host.as_deref()) == Some("n1")
        })
    })
    .await;

    // The static pod runs and has a Running mirror.
    let sys: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    eventually("mirror pod Running", || async {
        match sys.get_opt("stat-n1").await.unwrap() {
            Some(m) => {
                crate::static_pods::is_mirror(&m)
                    && m.status.and_then(|s| s.phase).as_deref() == Some("Running")
            }
            None => false,
        }
    })
    .await;
    // A deleted mirror comes back; the static pod keeps running.
    let m = sys.get("stat-n1").await.unwrap();
    sys.delete("stat-n1", &DeleteParams::default())
        .await
        .unwrap();
    eventually("mirror recreated", || async {
        sys.get_opt("stat-n1").await.unwrap().is_some_and(|n| {
            n.metadata.uid != m.metadata.uid && n.metadata.deletion_timestamp.is_none()
        })
    })
    .await;
    assert!(rt.containers().iter().filter(|c| c.0 == "c").count() == 1);

    // Graceful deletion: the kubelet stops everything and removes the pod for good.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web gone", || async {
        pods.get_opt("web").await.unwrap().is_none()
    })
    .await;
    eventually("web's containers removed", || async {
        rt.containers().iter().all(|c| c.0 != "web")
    })
    .await;
    assert_eq!(
        rt.sandbox_count(),
        1,
        "only the static pod's sandbox is left"
    );

    // Removing the manifest stops the static pod and deletes its mirror.
    std::fs::remove_file(dir.0.join("data/agent/pod-manifests/static.yaml")).unwrap();
    eventually("static pod stopped", || async { rt.sandbox_count() == 0 }).await;
    eventually("mirror deleted", || async {
        sys.get_opt("stat-n1").await.unwrap().is_none()
    })
    .await;
    drop(kubelet);
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
