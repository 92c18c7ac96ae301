//! Scheduler throughput, shaped like upstream's scheduler_perf `SchedulingBasic`: an in-process
//! apiserver over the embedded store in a temporary dir, N nodes created through the API (no
//! heartbeats), then M pods created; timed from the first pod created to the last binding
//! observed through a watch. A second run gives every pod a required pod anti-affinity
//! (hostname topology) against the others (upstream's `SchedulingPodAntiAffinity` shape).
//!
//! `cargo bench -p rkube-scheduler --bench scheduling_basic`; sizes from
//! `RKUBE_BENCH_NODES` (5000), `RKUBE_BENCH_PODS` (10000), `RKUBE_BENCH_ANTI_PODS` (4000).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use rkube_apiserver::authn::{Authenticator, UserInfo};
use rkube_apiserver::local::LocalService;
use rkube_apiserver::{ApiServer, Config};
use rkube_scheduler::lean::LeanPod;
use serde_json::json;

const CONCURRENCY: usize = 32;

// The allocator of the `rkube` binary, so the figures are those of what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn cluster(dir: &std::path::Path) -> kube::Client {
    let store = rkube_store::embedded::EmbeddedStore::open(dir).expect("open store");
    let authn = Authenticator {
        node_token_secret: String::new(),
        service_accounts: None,
    };
    let srv = ApiServer::new(store, authn, Config::default())
        .await
        .expect("apiserver");
    kube::Client::new(
        LocalService::new(srv, UserInfo::component("system:kube-scheduler")),
        "default",
    )
}

async fn create_nodes(client: &kube::Client, n: usize) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .for_each_concurrent(CONCURRENCY, |i| {
            let api = api.clone();
            async move {
                let name = format!("node-{i}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                }))
                .unwrap();
                api.create(&PostParams::default(), &node)
                    .await
                    .expect("create node");
                let res = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
                let status = json!({"status": {"capacity": res, "allocatable": res,
                    "conditions": [{"type": "Ready", "status": "True"}]}});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .expect("node status");
            }
        })
        .await;
}

fn pod(ns: &str, i: usize, anti: bool) -> Pod {
    let mut spec = json!({"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]});
    if anti {
        spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "blue"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    }
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": ns, "labels": {"color": if anti { "blue" } else { "green" }}},
        "spec": spec,
    }))
    .unwrap()
}

/// Creates `n` pods in `ns`; returns (pods/s, seconds) from the first create to the last
/// binding seen.
async fn measure(client: &kube::Client, ns: &str, n: usize, anti: bool) -> (f64, f64) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    nss.create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
    // The observer decodes pods as the scheduler does, without managedFields: its own cost is
    // not the scheduler's, and upstream's informers keep those as raw bytes.
    let watch_pods: Api<LeanPod> = Api::namespaced(client.clone(), ns);
    let watching = tokio::spawn(async move {
        let mut bound = std::collections::HashSet::new();
        let mut stream = watcher(watch_pods, watcher::Config::default()).boxed();
        let mut tx = Some(tx);
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(LeanPod(p)) | watcher::Event::InitApply(LeanPod(p)) = ev
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            {
                bound.insert(p.metadata.name.clone().unwrap_or_default());
                if bound.len() == n {
                    let _ = tx.take().unwrap().send(Instant::now());
                    return;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(CONCURRENCY, |i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(ns, i, anti))
                    .await
                    .expect("create pod");
            }
        })
        .await;
    let created = start.elapsed().as_secs_f64();
    let end = tokio::time::timeout(Duration::from_secs(600), rx)
        .await
        .expect("all pods bound within 10 minutes")
        .expect("watch");
    watching.abort();
    let secs = (end - start).as_secs_f64();
    eprintln!("  created {n} pods in {created:.2} s");
    (n as f64 / secs, secs)
}

fn main() {
    let nodes = env("RKUBE_BENCH_NODES", 5000);
    let pods = env("RKUBE_BENCH_PODS", 10000);
    let anti_pods = env("RKUBE_BENCH_ANTI_PODS", 4000).min(nodes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let client = cluster(dir.path()).await;
        let t = Instant::now();
        create_nodes(&client, nodes).await;
        eprintln!("created {nodes} nodes in {:.2} s", t.elapsed().as_secs_f64());
        tokio::spawn(rkube_scheduler::run(client.clone()));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rate, secs) = measure(&client, "basic", pods, false).await;
        println!("SchedulingBasic: {nodes} nodes, {pods} pods: {secs:.2} s, {rate:.0} pods/s");
        // Events are queued for one writer and dropped past 1,000 queued, as upstream's
        // broadcaster does: say how many of the `Scheduled` events made it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let events: Api<Event> = Api::namespaced(client.clone(), "basic");
        let written = events
            .list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|e| e.reason.as_deref() == Some("Scheduled"))
                    .count()
            })
            .unwrap_or(0);
        println!("  Scheduled events written: {written} of {pods}");
        if anti_pods > 0 {
            let (rate, secs) = measure(&client, "anti", anti_pods, true).await;
            println!(
                "SchedulingPodAntiAffinity: {nodes} nodes ({pods} pods already bound), {anti_pods} pods: {secs:.2} s, {rate:.0} pods/s"
            );
        }
    });
}
