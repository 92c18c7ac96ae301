//! `rkube agent` (today: simulated nodes only), `rkube scheduler` and `rkube controller-manager`:
//! components that join a cluster as API clients over HTTPS, building their `kube::Client` from flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use rkube_kubelet::simulated::{self, NodeCapacity};

/// Flags of `rkube agent`, named as k3s names them.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The server to join, e.g. `https://10.0.0.1:6443`.
    #[arg(long, env = "RKUBE_URL")]
    pub server: String,
    /// The join token (`<data-dir>/node-token` on the server, or just its secret part).
    #[arg(long, env = "RKUBE_TOKEN")]
    pub token: String,
    /// Register this many simulated nodes (kwok-style) instead of a real node.
    #[arg(long)]
    pub simulate: Option<usize>,
    /// Node name; with --simulate, the prefix of `PREFIX-0 … PREFIX-(N-1)`.
    #[arg(long)]
    pub node_name: Option<String>,
    /// A kubeconfig whose cluster CA is trusted for --server.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Accept the server's certificate without verifying it.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// CPU of each simulated node.
    #[arg(long, default_value = "32")]
    pub simulate_cpu: String,
    /// Memory of each simulated node.
    #[arg(long, default_value = "128Gi")]
    pub simulate_memory: String,
    /// Pods of each simulated node.
    #[arg(long, default_value = "110")]
    pub simulate_pods: String,
    /// Folder for the node's state: images, containers, logs, pod manifests.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,
    /// HTTPS port of the kubelet (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// This node's InternalIP (default: the address this host reaches the server from).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// Cluster DNS service IP pods resolve names with.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: std::net::IpAddr,
}

/// Controller settings shared by `rkube server` and `rkube controller-manager`.
#[derive(Args, Debug, Clone)]
pub struct ControllerFlags {
    /// Seconds a node's lease may go unrenewed before the node is marked NotReady (Unknown)
    /// and tainted unreachable.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    /// Seconds events are kept.
    #[arg(long, default_value_t = 3600)]
    pub event_ttl: u64,
    /// Terminated pods kept before the pod garbage collector deletes the oldest.
    #[arg(long, default_value_t = 12_500)]
    pub terminated_pod_gc_threshold: usize,
}

impl ControllerFlags {
    /// The controller manager's options from these flags.
    pub fn options(
        &self,
        root_ca_pem: String,
        cluster_cidr: Option<rkube_controllers::nodeipam::ClusterCidr>,
    ) -> rkube_controllers::Options {
        rkube_controllers::Options {
            root_ca_pem,
            cluster_cidr,
            node_lifecycle: rkube_controllers::nodelifecycle::Options {
                grace_period: std::time::Duration::from_secs(self.node_monitor_grace_period),
                ..Default::default()
            },
            podgc: rkube_controllers::podgc::Options {
                event_ttl: std::time::Duration::from_secs(self.event_ttl),
                terminated_pod_threshold: self.terminated_pod_gc_threshold,
                ..Default::default()
            },
        }
    }
}

/// Flags of `rkube controller-manager`.
#[derive(Args, Debug)]
pub struct ControllerManagerArgs {
    /// Kubeconfig of the cluster to manage.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// The cluster CIDR nodes get their pod CIDRs (/24 each) from.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Controller settings.
    #[command(flatten)]
    pub controllers: ControllerFlags,
}

/// Flags of `rkube scheduler`.
#[derive(Args, Debug)]
pub struct SchedulerArgs {
    /// Kubeconfig of the cluster to schedule for.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
}

async fn read_kubeconfig(path: &Path) -> anyhow::Result<kube::Config> {
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))
}

/// The cluster CA (PEM) a kubeconfig trusts, for the root CA publisher.
fn kubeconfig_ca_pem(path: &Path) -> anyhow::Result<String> {
    use base64::Engine;
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .with_context(|| format!("kubeconfig {} names no cluster", path.display()))?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        return Ok(String::from_utf8_lossy(&pem).into_owned());
    }
    if let Some(file) = &cluster.certificate_authority {
        return std::fs::read_to_string(file).with_context(|| format!("reading {file}"));
    }
    Ok(String::new())
}

/// A client for `--server` with the bearer token, trusting the CA of `--kubeconfig`.
async fn agent_client(args: &AgentArgs) -> anyhow::Result<kube::Client> {
    let url: http::Uri = args
        .server
        .parse()
        .with_context(|| format!("--server {:?} is not a URL", args.server))?;
    let mut config = match (&args.kubeconfig, args.insecure_skip_tls_verify) {
        (Some(path), _) => read_kubeconfig(path).await?,
        (None, true) => {
            let mut c = kube::Config::new(url.clone());
            c.accept_invalid_certs = true;
            c
        }
        (None, false) => anyhow::bail!(
            "cannot verify the server's certificate: pass --kubeconfig FILE (e.g. the server's \
             <data-dir>/kubeconfig.yaml, for its cluster CA) or --insecure-skip-tls-verify"
        ),
    };
    config.cluster_url = url;
    config.auth_info = AuthInfo {
        token: Some(args.token.trim().to_string().into()),
        ..AuthInfo::default()
    };
    kube::Client::try_from(config).context("building the API client")
}

/// Runs `rkube agent`.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let Some(count) = args.simulate else {
        return run_node(args).await;
    };
    let prefix = args.node_name.clone().unwrap_or_else(|| "sim".into());
    let client = agent_client(&args).await?;
    let capacity = NodeCapacity {
        cpu: args.simulate_cpu.clone(),
        memory: args.simulate_memory.clone(),
        pods: args.simulate_pods.clone(),
    };
    eprintln!(
        "registering {count} simulated nodes {prefix}-0 … {prefix}-{}",
        count.saturating_sub(1)
    );
    tokio::select! {
        r = simulated::run_simulated(client, &prefix, count, capacity) => {
            r.with_context(|| format!("running simulated nodes against {}", args.server))?;
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Runs a real node: the kubelet and the embedded runtime.
async fn run_node(args: AgentArgs) -> anyhow::Result<()> {
    let client = agent_client(&args).await?;
    check_join(&client, &args.server).await?;
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => crate::server::hostname().context("reading the host name (or pass --node-name)")?,
    };
    let node_ip = args
        .node_ip
        .or_else(|| crate::node::route_source_to(&args.server))
        .with_context(|| format!("no route to {}: pass --node-ip", args.server))?;
    let cluster_ca_pem = match &args.kubeconfig {
        Some(path) => kubeconfig_ca_pem(path)?,
        None => String::new(),
    };
    eprintln!("joining {} as node {node_name} ({node_ip})", args.server);
    let options = crate::node::NodeOptions {
        data_dir: args.data_dir.clone(),
        node_name,
        node_ip,
        kubelet_port: args.kubelet_port,
        control_plane: false,
        cluster_dns: args.cluster_dns,
        cluster_ca_pem,
    };
    tokio::select! {
        r = crate::node::run(client, options) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Fails early, naming the fix, when the server refuses the join token.
async fn check_join(client: &kube::Client, server: &str) -> anyhow::Result<()> {
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    match namespaces.get("kube-system").await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 401 => anyhow::bail!(
            "the server {server} refused the join token (401 Unauthorized): pass the token from \
             the server's <data-dir>/node-token with --token"
        ),
        Err(e) => Err(e).with_context(|| format!("cannot reach the server {server}")),
    }
}

/// Runs `rkube controller-manager`: every controller against the cluster of a kubeconfig.
pub async fn run_controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let config = read_kubeconfig(&args.kubeconfig).await?;
    let client = kube::Client::try_from(config).context("building the API client")?;
    let cidr = rkube_controllers::nodeipam::ClusterCidr::parse(&args.cluster_cidr)
        .map_err(anyhow::Error::msg)?;
    let options = args
        .controllers
        .options(kubeconfig_ca_pem(&args.kubeconfig)?, Some(cidr));
    eprintln!("controller-manager running");
    tokio::select! {
        _ = rkube_controllers::run_all(client, options) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Runs `rkube scheduler`.
pub async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let config = read_kubeconfig(&args.kubeconfig).await?;
    let client = kube::Client::try_from(config).context("building the API client")?;
    eprintln!("scheduler running");
    tokio::select! {
        _ = rkube_scheduler::run(client) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
