//! The node agent's composition: the image store, the pod network and the embedded runtime
//! under `<data-dir>/agent`, and the kubelet on top of them. `rkube agent` runs it against a
//! remote server; `rkube server` runs it in-process unless `--disable-agent`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use rkube_cri::{ImageService, RuntimeService};
use rkube_image::ImageStore;
use rkube_net::LoopbackNetwork;
use rkube_runtime::EmbeddedRuntime;

/// What differs between the server's node and a joined agent.
pub struct NodeOptions {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// The node's name.
    pub node_name: String,
    /// Its InternalIP, where the apiserver reaches the kubelet.
    pub node_ip: IpAddr,
    /// The kubelet's HTTPS port.
    pub kubelet_port: u16,
    /// Servers carry the control-plane role label.
    pub control_plane: bool,
    /// The cluster DNS service IP pods resolve names with.
    pub cluster_dns: IpAddr,
    /// The cluster CA (PEM): the kubelet accepts client certificates it signed.
    pub cluster_ca_pem: String,
}

/// The node's pieces, built once.
struct NodeParts {
    images: Arc<ImageStore>,
    network: Arc<LoopbackNetwork>,
    runtime: Arc<EmbeddedRuntime>,
}

fn open(data_dir: &Path) -> anyhow::Result<NodeParts> {
    let agent = data_dir.join("agent");
    let images = Arc::new(
        ImageStore::open_data_dir(data_dir)
            .with_context(|| format!("opening the image store under {}", agent.display()))?,
    );
    let network = Arc::new(LoopbackNetwork::new(agent.join("net")));
    let runtime = Arc::new(
        EmbeddedRuntime::new(agent.join("runtime"), images.clone(), network.clone())
            .context("starting the container runtime")?,
    );
    Ok(NodeParts {
        images,
        network,
        runtime,
    })
}

/// Runs the node until the process ends.
pub async fn run(client: kube::Client, opts: NodeOptions) -> anyhow::Result<()> {
    let parts = open(&opts.data_dir)?;
    import_airgap_images(&opts.data_dir).await;
    tokio::spawn(follow_pod_cidr(
        client.clone(),
        opts.node_name.clone(),
        parts.network.clone(),
    ));
    let config = rkube_kubelet::KubeletConfig {
        node_name: opts.node_name.clone(),
        data_dir: opts.data_dir.clone(),
        kubelet_port: opts.kubelet_port,
        node_ips: vec![opts.node_ip],
        cluster_dns: vec![opts.cluster_dns],
        control_plane: opts.control_plane,
        client_ca_pem: opts.cluster_ca_pem.clone(),
        ..rkube_kubelet::KubeletConfig::new(&opts.node_name, &opts.data_dir)
    };
    let runtime: Arc<dyn RuntimeService> = parts.runtime;
    let images: Arc<dyn ImageService> = parts.images;
    rkube_kubelet::run(client, config, runtime, images)
        .await
        .context("running the kubelet")
}

/// Imports the OCI/docker archives of `<data-dir>/agent/images` (air-gapped installs),
/// printing progress; a bad archive is reported and skipped. The import runs as
/// `rkube image import-dir` in a child process: decompressing and hashing layers leaves
/// megabytes of allocator pages behind, which the long-lived agent should not carry (the
/// store locks itself, so the child and the agent share it safely).
async fn import_airgap_images(data_dir: &Path) {
    let dir = data_dir.join("agent/images");
    if !dir.is_dir() {
        return;
    }
    let status = async {
        tokio::process::Command::new(std::env::current_exe()?)
            .arg("image")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("import-dir")
            .arg(&dir)
            .stdin(std::process::Stdio::null())
            .status()
            .await
    }
    .await;
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("importing images from {}: {s}", dir.display()),
        Err(e) => eprintln!("importing images from {}: {e}", dir.display()),
    }
}

/// Hands the node's pod CIDR to the pod network once the node IPAM controller assigned it
/// (and again if it changes).
async fn follow_pod_cidr(client: kube::Client, node: String, network: Arc<LoopbackNetwork>) {
    let nodes: Api<Node> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={node}"));
    let mut stream = std::pin::pin!(watcher(nodes, config).default_backoff().applied_objects());
    let mut current = String::new();
    while let Some(event) = stream.next().await {
        let Ok(n) = event else { continue };
        let cidr = n.spec.and_then(|s| s.pod_cidr).unwrap_or_default();
        if !cidr.is_empty() && cidr != current {
            match network.set_pod_cidr(&cidr) {
                Ok(()) => current = cidr,
                Err(e) => tracing::warn!("pod CIDR {cidr}: {e}"),
            }
        }
    }
}

/// `rkube killall`: stops every pod the node under `data_dir` runs and removes their
/// containers, mounts, cgroups and namespaces (the agent itself leaves them running on
/// purpose, so it can restart without touching pods).
pub async fn killall(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.join("agent/runtime").exists() {
        return Ok(());
    }
    let parts = open(data_dir)?;
    let sandboxes = parts.runtime.list_pod_sandbox().await?;
    for sb in &sandboxes {
        parts.runtime.stop_pod_sandbox(&sb.id).await?;
        parts.runtime.remove_pod_sandbox(&sb.id).await?;
    }
    eprintln!("stopped {} pod(s)", sandboxes.len());
    // Whatever is still mounted below the data dir (tmpfs volumes of pods the kubelet did not
    // get to tear down); the data dir itself may be a filesystem of its own and stays.
    if let Err(e) = rkube_kubelet::volumes::mount::unmount_below(data_dir) {
        eprintln!("unmounting below {}: {e}", data_dir.display());
    }
    Ok(())
}

/// The address this host uses to reach `server` (the agent's InternalIP): the source of the
/// route to it, found by "connecting" a UDP socket (nothing is sent).
pub fn route_source_to(server: &str) -> Option<IpAddr> {
    let url: http::Uri = server.parse().ok()?;
    let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(6443);
    let target: IpAddr = host.parse().ok().or_else(|| {
        use std::net::ToSocketAddrs;
        (host, port).to_socket_addrs().ok()?.next().map(|a| a.ip())
    })?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect((target, port)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}
