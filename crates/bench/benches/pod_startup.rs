//! Pod start-up benchmark: `cargo build --release --bin rkube && cargo bench -p rkube-bench
//! --bench pod_startup`.
//!
//! A `rkube server --disable-agent` and a separate `rkube agent` (so the agent's own memory
//! can be read), the busybox image already imported. Start-up latency as upstream's SLI
//! defines it: from the create request to the watch event showing every container running,
//! for 100 pods created one after another and for 100 created at once. Also the agent's RSS
//! idle and with 100 pods, and the pod supervisors' RSS. Figures, not assertions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rkube_bench::client::Tls;
use rkube_bench::server::{Agent, BUSYBOX, Server, node_ready};
use rkube_bench::stats::{mib, ms, percentile};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Pods per run.
const PODS: usize = 100;
const NODE: &str = "bench-node";

fn pod(name: &str) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {
                "nodeName": NODE,
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]
            }
        })
        .to_string(),
    )
}

/// Whether a watched pod has every container running.
fn all_running(pod: &Value) -> bool {
    let want = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let running = pod["status"]["containerStatuses"]
        .as_array()
        .map_or(0, |cs| {
            cs.iter()
                .filter(|c| c["state"]["running"].is_object())
                .count()
        });
    want > 0 && running == want
}

/// Reads the pod watch, sending each pod's name the first time it is seen fully running.
async fn read_watch(
    mut body: hyper::body::Incoming,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while let Some(frame) = body.frame().await {
        let at = Instant::now();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let obj = &event["object"];
            if all_running(obj) {
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                if seen.insert(name.clone()) {
                    tx.send((name, at))?;
                }
            }
        }
    }
    Ok(())
}

async fn wait_node_ready(tls: &Tls) -> anyhow::Result<()> {
    let mut conn = tls.connect().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let (status, body) = conn
            .call(Method::GET, &format!("/api/v1/nodes/{NODE}"), None)
            .await?;
        if status == StatusCode::OK {
            let node: Value = serde_json::from_slice(&body)?;
            if node_ready(&node) && node["spec"]["podCIDR"].is_string() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("node {NODE} not Ready after 60 s")
}

async fn delete_all(tls: &Tls) -> anyhow::Result<()> {
    let mut conn = tls.connect().await?;
    conn.call(
        Method::DELETE,
        "/api/v1/namespaces/default/pods?labelSelector=bench%3Dstartup",
        None,
    )
    .await?;
    // Wait until the kubelet has finished them.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let (_, body) = conn
            .call(
                Method::GET,
                "/api/v1/namespaces/default/pods?labelSelector=bench%3Dstartup",
                None,
            )
            .await?;
        let list: Value = serde_json::from_slice(&body)?;
        if list["items"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("pods not gone after 120 s")
}

/// Creates `PODS` pods (all at once when `burst`, else each after the previous one runs);
/// returns each pod's create-to-running latency.
async fn run(tls: &Tls, prefix: &str, burst: bool) -> anyhow::Result<Vec<Duration>> {
    let mut watcher = tls.connect().await?;
    let resp = watcher
        .send(
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Dstartup",
            None,
        )
        .await?;
    anyhow::ensure!(resp.status() == StatusCode::OK, "watch: {}", resp.status());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_watch(resp.into_body(), tx));
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(PODS);
    let path = "/api/v1/namespaces/default/pods";
    if burst {
        let mut tasks = Vec::new();
        for i in 0..PODS {
            let name = format!("{prefix}-{i}");
            let tls = tls.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = tls.connect().await?;
                let t = Instant::now();
                conn.expect(StatusCode::CREATED, Method::POST, path, Some(pod(&name)))
                    .await?;
                anyhow::Ok((name, t))
            }));
        }
        for t in tasks {
            let (name, at) = t.await??;
            created.insert(name, at);
        }
        while latencies.len() < PODS {
            let (name, at) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
            if let Some(t) = created.get(&name) {
                latencies.push(at.saturating_duration_since(*t));
            }
        }
    } else {
        let mut conn = tls.connect().await?;
        for i in 0..PODS {
            let name = format!("{prefix}-{i}");
            let t = Instant::now();
            conn.expect(StatusCode::CREATED, Method::POST, path, Some(pod(&name)))
                .await?;
            loop {
                let (seen, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
                if seen == name {
                    latencies.push(at.saturating_duration_since(t));
                    break;
                }
            }
        }
    }
    reader.abort();
    Ok(latencies)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut server = Server::spawn(None)?;
    server.wait_ready().await?;
    let tls = server.admin()?;
    let agent = Agent::spawn(&server, NODE)?;
    wait_node_ready(&tls).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = agent.rss_kib()?;
    eprintln!("rkube-bench: {PODS} pods one after another …");
    let sequential = run(&tls, "seq", false).await?;
    let with_pods = agent.rss_kib()?;
    let supervisors = agent.supervisors_rss_kib();
    delete_all(&tls).await?;
    eprintln!("rkube-bench: {PODS} pods at once …");
    let burst = run(&tls, "burst", true).await?;
    delete_all(&tls).await?;
    println!("| figure | value |");
    println!("|---|---|");
    let row = |label: &str, l: &[Duration]| {
        println!(
            "| pod start-up, {label}: p50 / p99 / max ({PODS}) | {} / {} / {} |",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(percentile(l, 1.0))
        );
    };
    row("one after another", &sequential);
    row("burst of 100", &burst);
    println!("| agent RSS, idle | {} |", mib(idle));
    println!(
        "| agent RSS with {PODS} running pods | {} |",
        mib(with_pods)
    );
    println!(
        "| pod supervisors' RSS with {PODS} pods (sum; per pod) | {} ; {} |",
        mib(supervisors),
        mib(supervisors / PODS as u64)
    );
    Ok(())
}
