//! Node registration and heartbeat, pod volumes and container environments against an
//! in-process apiserver (a real `ApiServer` behind `kube::Client`, no TCP).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rkube_kubelet::node::{self, NodeConfig};
use rkube_kubelet::volumes::{self, VolumeManager};
use rkube_kubelet::{envvars, qos};
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

async fn cluster(dir: &Path) -> kube::Client {
    support::apiserver(dir, &["default", "kube-node-lease", "app"]).await
}

fn create<K>(
    client: &kube::Client,
    ns: &str,
    v: serde_json::Value,
) -> impl std::future::Future<Output = K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    async move {
        let obj: K = serde_json::from_value(v).unwrap();
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create")
    }
}

fn node_cfg(dir: &Path) -> NodeConfig {
    NodeConfig {
        name: "n1".into(),
        addresses: vec!["10.1.2.3".parse().unwrap()],
        kubelet_port: 10250,
        control_plane: false,
        labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
        taints: vec![
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"}))
                .unwrap(),
        ],
        data_dir: dir.to_path_buf(),
        runtime_version: "rkube://0.1.0".into(),
    }
}

#[tokio::test]
async fn node_registers_and_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let client = cluster(dir.path()).await;
    let cfg = node_cfg(dir.path());
    let n = node::register(&client, &cfg).await.expect("register");
    let labels = n.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["team"], "a");
    let status = n.status.clone().unwrap();
    let ready = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    assert!(
        status.capacity.as_ref().unwrap()["memory"]
            .0
            .ends_with("Ki")
            || status.capacity.as_ref().unwrap()["memory"]
                .0
                .ends_with("Mi")
    );
    assert_eq!(
        status.node_info.as_ref().unwrap().kubelet_version,
        format!("{}+rkube", rkube_apiserver::KUBERNETES_VERSION)
    );
    assert_eq!(
        status
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port,
        10250
    );
    assert_eq!(
        n.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].key,
        "k"
    );

    // Others set spec and a condition of their own; a restart's registration keeps them.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"podCIDR": "10.42.0.0/24", "unschedulable": true, "taints": []}}),
            ),
        )
        .await
        .unwrap();
    let mut st = nodes.get_status("n1").await.unwrap().status.unwrap();
    st.conditions.as_mut().unwrap().push(
        serde_json::from_value(
            json!({"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}),
        )
        .unwrap(),
    );
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": st.conditions}})),
        )
        .await
        .unwrap();
    let again = node::register(&client, &cfg).await.expect("re-register");
    let spec = again.spec.unwrap();
    assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.0.0/24"));
    assert_eq!(spec.unschedulable, Some(true));
    assert!(spec.taints.unwrap_or_default().is_empty());
    let conds = again.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "NetworkUnavailable"));
    assert_eq!(conds.iter().filter(|c| c.type_ == "Ready").count(), 1);
    let after_ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(after_ready.last_transition_time, ready.last_transition_time);

    // The heartbeat: a Lease owned by the Node; a deleted Node comes back.
    let stop = CancellationToken::new();
    let hb = tokio::spawn(node::run_heartbeat_every(
        client.clone(),
        cfg.clone(),
        stop.clone(),
        Duration::from_millis(200),
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = wait(|| async { leases.get_opt("n1").await.ok().flatten() }).await;
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let uid = nodes.get("n1").await.unwrap().metadata.uid.unwrap();
    assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, uid);
    let renewed = wait(|| async {
        let l = leases.get("n1").await.ok()?;
        (l.spec.as_ref()?.renew_time != spec.renew_time).then_some(l)
    })
    .await;
    assert!(renewed.spec.clone().unwrap().renew_time.is_some());
    // Nothing changed: the Node is not rewritten on every heartbeat (only the Lease is).
    let rv = nodes.get("n1").await.unwrap().metadata.resource_version;
    let renew = renewed.spec.unwrap().renew_time;
    wait(|| async {
        let l = leases.get("n1").await.ok()?;
        (l.spec.as_ref()?.renew_time != renew).then_some(())
    })
    .await;
    assert_eq!(
        nodes.get("n1").await.unwrap().metadata.resource_version,
        rv,
        "node status rewritten without a change"
    );

    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    let back = wait(|| async {
        let n = nodes.get_opt("n1").await.ok().flatten()?;
        (n.metadata.uid.as_deref() != Some(uid.as_str())).then_some(n)
    })
    .await;
    let new_uid = back.metadata.uid.unwrap();
    wait(|| async {
        let l = leases.get("n1").await.ok()?;
        (l.metadata.owner_references?.first()?.uid == new_uid).then_some(())
    })
    .await;
    stop.cancel();
    hb.await.unwrap();
}

async fn wait<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 10 s");
}

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

/// Unmounts whatever a failed test left under the temp dir before it is removed.
struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = volumes::mount::unmount_under(&self.0);
    }
}

#[tokio::test]
async fn volumes_follow_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let client = cluster(dir.path()).await;
    let _: ConfigMap = create(
        &client,
        "app",
        json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}),
    )
    .await;
    let _: Secret = create(
        &client,
        "app",
        json!({"metadata": {"name": "sec"}, "stringData": {"pw": "hunter2"}}),
    )
    .await;
    let _: ConfigMap = create(
        &client,
        "app",
        json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "CA"}}),
    )
    .await;
    let _: ServiceAccount = create(&client, "app", json!({"metadata": {"name": "default"}})).await;
    let root = dir.path().join("agent/kubelet");
    let vm = VolumeManager::new(client.clone(), root.clone());
    let hostdir = dir.path().join("host");
    let p = pod(json!({
    "metadata": {"name": "p", "namespace": "app", "uid": "uid-1", "labels": {"app": "web"}},
    "spec": {"nodeName": "n1", "containers": [{"name": "c"}], "volumes": [
        {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "x/a"}], "defaultMode": 0o600}},
        {"name": "all", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "opt", "configMap": {"name": "nope", "optional": true}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "host", "hostPath": {"path": hostdir, "type": "DirectoryOrCreate"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}},
    ]}}));
    let paths = vm.setup(&p).await.expect("setup");
    let pod_dir = root.join("pods/uid-1/volumes");
    assert_eq!(paths["cfg"], pod_dir.join("kubernetes.io~configmap/cfg"));
    assert_eq!(
        std::fs::read_to_string(paths["cfg"].join("x/a")).unwrap(),
        "1"
    );
    assert!(!paths["cfg"].join("b").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(paths["cfg"].join("x/a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_to_string(paths["all"].join("b")).unwrap(),
        "2"
    );
    assert_eq!(
        std::fs::read_to_string(paths["sec"].join("pw")).unwrap(),
        "hunter2"
    );
    assert!(
        volumes::mount::is_mount_point(&paths["sec"]),
        "secret volumes are tmpfs"
    );
    assert!(volumes::mount::is_mount_point(&paths["mem"]));
    assert!(
        std::fs::read_dir(&paths["opt"]).unwrap().all(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".."))
    );
    assert_eq!(paths["host"], hostdir);
    assert!(hostdir.is_dir());
    assert_eq!(
        std::fs::read_to_string(paths["info"].join("labels")).unwrap(),
        "app=\"web\""
    );
    let sa = &paths["kube-api-access-abcde"];
    assert_eq!(std::fs::read_to_string(sa.join("ca.crt")).unwrap(), "CA");
    assert_eq!(
        std::fs::read_to_string(sa.join("namespace")).unwrap(),
        "app"
    );
    let token = std::fs::read_to_string(sa.join("token")).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // An update reaches the running pod through refresh, swapping `..data`.
    let before = std::fs::read_link(paths["all"].join("..data")).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "app");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"b": "3"}})),
    )
    .await
    .unwrap();
    let mut p2 = p.clone();
    p2.metadata.labels = Some(BTreeMap::from([("app".to_string(), "api".to_string())]));
    vm.refresh(&p2).await.expect("refresh");
    assert_eq!(
        std::fs::read_to_string(paths["all"].join("b")).unwrap(),
        "3"
    );
    assert_ne!(
        std::fs::read_link(paths["all"].join("..data")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(paths["info"].join("labels")).unwrap(),
        "app=\"api\""
    );
    // The token is reused, not requested again.
    assert_eq!(std::fs::read_to_string(sa.join("token")).unwrap(), token);

    // Mounts for a container.
    let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
        {"name": "all", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/tmp/x", "subPath": "sub"}]}))
    .unwrap();
    let mounts = volumes::container_mounts(&p, &c, &paths, &[]).unwrap();
    assert!(mounts[0].readonly);
    assert!(!mounts[1].readonly);
    assert!(paths["scratch"].join("sub").is_dir());

    // Errors read as upstream's FailedMount events.
    let bad = |vols: serde_json::Value| {
        pod(
            json!({"metadata": {"name": "q", "namespace": "app", "uid": "uid-2"},
        "spec": {"containers": [{"name": "c"}], "volumes": vols}}),
        )
    };
    let e = vm
        .setup(&bad(
            json!([{"name": "cfg", "configMap": {"name": "nope"}}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"nope\" not found"
    );
    let e = vm
        .setup(&bad(
            json!([{"name": "s", "secret": {"secretName": "nope"}}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"nope\" not found"
    );
    let e = vm.setup(&bad(json!([{"name": "k", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "zz"}]}}]))).await.unwrap_err();
    assert_eq!(
        e.message(),
        "MountVolume.SetUp failed for volume \"k\" : configmap references non-existent config key: zz"
    );
    let file = dir.path().join("plainfile");
    std::fs::write(&file, "").unwrap();
    let e = vm
        .setup(&bad(
            json!([{"name": "h", "hostPath": {"path": file, "type": "Directory"}}]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory",
            file.display()
        )
    );
    let e = vm
        .setup(&bad(
            json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
        ))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("volume type nfs is not supported"),
        "{}",
        e.message()
    );
    vm.teardown("uid-2").await.unwrap();

    // A claim bound to a hostPath PersistentVolume is followed to its path.
    let pv_dir = dir.path().join("pv");
    let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
    let pv: k8s_openapi::api::core::v1::PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": pv_dir, "type": "DirectoryOrCreate"}}}))
    .unwrap();
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    let _: k8s_openapi::api::core::v1::PersistentVolumeClaim = create(&client, "app", json!({
        "metadata": {"name": "claim"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1", "resources": {"requests": {"storage": "1Gi"}}}}))
    .await;
    let claim = bad(json!([{"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}]));
    let e = vm.setup(&claim).await.unwrap_err();
    assert!(e.message().contains("non-bound phase"), "{}", e.message());
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), "app");
    pvcs.patch_status(
        "claim",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    let got = vm.setup(&claim).await.expect("claim volume");
    assert_eq!(got["d"], pv_dir);
    assert!(pv_dir.is_dir());
    vm.teardown("uid-2").await.unwrap();

    // Teardown unmounts the tmpfs volumes and removes the pod directory.
    vm.teardown("uid-1").await.expect("teardown");
    assert!(!root.join("pods/uid-1").exists());
    assert!(!volumes::mount::is_mount_point(&paths["sec"]));
    assert!(hostdir.is_dir(), "hostPath contents are never touched");
    vm.teardown("uid-1").await.expect("idempotent");
}

#[tokio::test]
async fn container_environment() {
    let dir = tempfile::tempdir().unwrap();
    let client = cluster(dir.path()).await;
    let _: ConfigMap = create(
        &client,
        "app",
        json!({"metadata": {"name": "cfg"}, "data": {"A": "1", "1st": "x", "B": "2"}}),
    )
    .await;
    let _: Secret = create(
        &client,
        "app",
        json!({"metadata": {"name": "sec"}, "stringData": {"PW": "s3cret"}}),
    )
    .await;
    let services: Vec<Service> = vec![
        create(&client, "default", json!({"metadata": {"name": "kubernetes"}, "spec": {"ports": [{"name": "https", "port": 443}]}})).await,
        create(&client, "app", json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})).await,
    ];
    let p = pod(json!({
        "metadata": {"name": "p", "namespace": "app", "uid": "uid-1"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c",
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}, {"secretRef": {"name": "nope", "optional": true}}],
            "env": [
                {"name": "X", "value": "x-$(CM_A)-$(WEB_SERVICE_PORT)-$(UNDEFINED)-$$(CM_A)"},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PW"}}},
                {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "zz", "optional": true}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CM_A", "value": "override"},
            ]}]},
        "status": {"podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}]},
    }));
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let (env, warnings) = envvars::container_env_with_warnings(&client, &p, &c, &services)
        .await
        .expect("env");
    let m: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let web_port = m["WEB_SERVICE_PORT"];
    assert_eq!(web_port, "80");
    assert_eq!(m["X"], "x-1-80-$(UNDEFINED)-$(CM_A)");
    assert_eq!(m["PW"], "s3cret");
    assert_eq!(m["B"], "2");
    assert!(!m.contains_key("OPT"));
    assert_eq!(m["POD_IP"], "10.42.0.9");
    assert_eq!(m["NODE"], "n1");
    assert_eq!(m["MEM"], "128");
    assert_eq!(m["CM_A"], "override");
    assert!(m.contains_key("KUBERNETES_SERVICE_HOST"));
    assert_eq!(env.iter().filter(|(k, _)| k == "CM_A").count(), 1);
    // Relaxed names (GA in 1.34): a key starting with a digit is kept.
    assert_eq!(m["CM_1st"], "x");
    assert!(warnings.is_empty(), "{warnings:?}");
    // envFrom comes first, service variables last.
    assert_eq!(env[0].0, "CM_1st");
    assert!(env.last().unwrap().0.contains("_PORT") || env.last().unwrap().0.contains("_SERVICE_"));

    let err = |env: serde_json::Value| {
        let mut c = c.clone();
        c.env_from = None;
        c.env = Some(serde_json::from_value(env).unwrap());
        let client = client.clone();
        let p = p.clone();
        async move {
            envvars::container_env(&client, &p, &c, &[])
                .await
                .unwrap_err()
                .message()
                .to_string()
        }
    };
    assert_eq!(
        err(json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]))
            .await,
        "configmap \"nope\" not found"
    );
    assert_eq!(
        err(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]))
            .await,
        "secret \"nope\" not found"
    );
    assert_eq!(
        err(
            json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "foo"}}}])
        )
        .await,
        "couldn't find key foo in ConfigMap app/cfg"
    );
    assert_eq!(
        err(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "foo"}}}]))
            .await,
        "couldn't find key foo in Secret app/sec"
    );

    // Without service links only the kubernetes service's variables remain.
    let mut p2 = p.clone();
    p2.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env = envvars::container_env(&client, &p2, &c, &services)
        .await
        .unwrap();
    assert!(!env.iter().any(|(k, _)| k.starts_with("WEB_")));
    assert!(env.iter().any(|(k, _)| k == "KUBERNETES_SERVICE_HOST"));
    assert_eq!(qos::qos_class(&p), "Guaranteed");
}
