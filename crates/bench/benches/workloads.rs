//! Workloads at scale: `cargo build --release --bin rkube && cargo bench -p rkube-bench
//! --bench workloads`.
//!
//! The control plane split as upstream runs it, so each part's memory can be read: `rkube
//! server --disable-agent --disable-scheduler --disable-controller-manager`, a separate
//! `rkube scheduler` and `rkube controller-manager`, and simulated nodes from `rkube agent
//! --simulate N` (kwok-style: pods bound to them are reported Running and Ready).
//!
//! 1. A Deployment of 1,000 replicas on 100 simulated nodes: time from the create to
//!    `availableReplicas == 1000` (status polled every 50 ms).
//! 2. A fresh cluster with one agent carrying 5,000 simulated nodes: time until all are
//!    Ready, the agent's RSS and CPU while they heartbeat; then a Deployment of 10,000
//!    replicas, its time to become available, and the RSS of the controller manager, the
//!    scheduler, the agent and the API server at 5,000 nodes / 10,000 pods.
//!
//! Sizes: `RKUBE_BENCH_SMALL_NODES` (100), `RKUBE_BENCH_SMALL_REPLICAS` (1000),
//! `RKUBE_BENCH_LARGE_NODES` (5000), `RKUBE_BENCH_LARGE_REPLICAS` (10000). Figures, not
//! assertions.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use rkube_bench::client::Conn;
use rkube_bench::server::{Component, Server, node_ready};
use rkube_bench::stats::mib;
use serde_json::{Value, json};

/// How long any one phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A control plane with its scheduler and controller manager as processes of their own.
struct Cluster {
    server: Server,
    scheduler: Component,
    controllers: Component,
    conn: Conn,
}

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        let mut server = Server::spawn_with(
            None,
            &["--disable-scheduler", "--disable-controller-manager"],
        )?;
        server.wait_ready().await?;
        let scheduler = Component::control_plane(&server, "scheduler")?;
        let controllers = Component::control_plane(&server, "controller-manager")?;
        let conn = server.admin()?.connect().await?;
        Ok(Cluster {
            server,
            scheduler,
            controllers,
            conn,
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        let body = self
            .conn
            .expect(StatusCode::OK, Method::GET, path, None)
            .await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Nodes whose Ready condition is True.
    async fn ready_nodes(&mut self) -> anyhow::Result<usize> {
        let list = self.get("/api/v1/nodes").await?;
        Ok(list["items"]
            .as_array()
            .map_or(0, |items| items.iter().filter(|n| node_ready(n)).count()))
    }

    /// Polls until `want` nodes are Ready; returns how long that took from `since`.
    async fn wait_nodes(&mut self, want: usize, since: Instant) -> anyhow::Result<Duration> {
        loop {
            if self.ready_nodes().await? >= want {
                return Ok(since.elapsed());
            }
            if since.elapsed() > PHASE_TIMEOUT {
                bail!("{want} nodes not Ready after {PHASE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Creates Deployment `name` with `replicas` pods and waits until all are available;
    /// returns the time from the create.
    async fn deploy(&mut self, name: &str, replicas: usize) -> anyhow::Result<Duration> {
        let path = "/apis/apps/v1/namespaces/default/deployments";
        let start = Instant::now();
        self.conn
            .expect(
                StatusCode::CREATED,
                Method::POST,
                path,
                Some(deployment(name, replicas)),
            )
            .await?;
        let mut last_report = Instant::now();
        loop {
            let d = self.get(&format!("{path}/{name}")).await?;
            let available = d["status"]["availableReplicas"].as_u64().unwrap_or(0) as usize;
            if available == replicas {
                return Ok(start.elapsed());
            }
            if start.elapsed() > PHASE_TIMEOUT {
                bail!("{available}/{replicas} available after {PHASE_TIMEOUT:?}");
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  {:.0} s: {available}/{replicas} available",
                    start.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn report_memory(&self, agent: &Component) -> anyhow::Result<()> {
        let cm = self.controllers.rss_kib()?;
        let sched = self.scheduler.rss_kib()?;
        println!(
            "  RSS: controller-manager {}, scheduler {} (together {}), agent {}, apiserver {}",
            mib(cm),
            mib(sched),
            mib(cm + sched),
            mib(agent.rss_kib()?),
            mib(self.server.rss_kib()?)
        );
        Ok(())
    }
}

/// A Deployment of `replicas` pause pods with small requests, so 110 fit on any node.
fn deployment(name: &str, replicas: usize) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "automountServiceAccountToken": false,
                        "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
                    }
                }
            }
        })
        .to_string(),
    )
}

/// Phase 1: a Deployment of 1,000 replicas on 100 simulated nodes.
async fn small() -> anyhow::Result<()> {
    let nodes = size("RKUBE_BENCH_SMALL_NODES", 100);
    let replicas = size("RKUBE_BENCH_SMALL_REPLICAS", 1000);
    let mut cluster = Cluster::start().await?;
    let start = Instant::now();
    let agent = Component::simulated_nodes(&cluster.server, "sim", nodes)?;
    let ready = cluster.wait_nodes(nodes, start).await?;
    println!(
        "{nodes} simulated nodes Ready in {:.2} s",
        ready.as_secs_f64()
    );
    let took = cluster.deploy("web", replicas).await?;
    println!(
        "Deployment of {replicas} replicas on {nodes} simulated nodes: available in {:.2} s ({:.0} pods/s)",
        took.as_secs_f64(),
        replicas as f64 / took.as_secs_f64()
    );
    cluster.report_memory(&agent)
}

/// Phase 2: one agent carrying 5,000 simulated nodes, then 10,000 pods on them.
async fn large() -> anyhow::Result<()> {
    let nodes = size("RKUBE_BENCH_LARGE_NODES", 5000);
    let replicas = size("RKUBE_BENCH_LARGE_REPLICAS", 10_000);
    let mut cluster = Cluster::start().await?;
    let start = Instant::now();
    let agent = Component::simulated_nodes(&cluster.server, "big", nodes)?;
    let ready = cluster.wait_nodes(nodes, start).await?;
    println!(
        "{nodes} simulated nodes (one agent process) Ready in {:.2} s",
        ready.as_secs_f64()
    );
    // Steady state: the agent renews 5,000 leases every 10 s and reports node status.
    let window = Duration::from_secs(20);
    let cpu_before = agent.cpu_time()?;
    tokio::time::sleep(window).await;
    let cpu = agent.cpu_time()? - cpu_before;
    println!(
        "  agent carrying {nodes} nodes: RSS {}, CPU {:.1}% of one core over {} s of heartbeats",
        mib(agent.rss_kib()?),
        cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
        window.as_secs()
    );
    cluster.report_memory(&agent)?;
    let took = cluster.deploy("scale", replicas).await?;
    println!(
        "Deployment of {replicas} replicas on {nodes} simulated nodes: available in {:.2} s ({:.0} pods/s)",
        took.as_secs_f64(),
        replicas as f64 / took.as_secs_f64()
    );
    // Let the controllers and the scheduler settle (informer caches full, queues drained).
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!("  at {nodes} nodes / {replicas} pods:");
    cluster.report_memory(&agent)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        small().await?;
        large().await
    })
}
