//! rkube-kubelet: the node agent — registering the node, running the pods bound to it through
//! the CRI traits (`rkube_cri::RuntimeService` / `ImageService`) and reporting their status.
//!
//! [`run`] composes the pieces: node registration and heartbeat ([`node`]), one pod worker per
//! pod ([`pods`]) fed by the API (pods with `spec.nodeName=<node>`) and by static manifests
//! ([`static_pods`]), probes ([`probes`]), status ([`status`]), log rotation ([`logs`]) and the
//! streaming server (`rkube-streaming`, resolved through [`resolver`]). [`simulated`] holds
//! kwok-style nodes without containers for scale work. It talks to the cluster only through
//! the API (a `kube::Client`), never to the store.

pub mod backoff;
pub mod config;
pub mod envvars;
pub mod events;
pub mod hostinfo;
pub mod logs;
pub mod node;
pub mod pods;
pub mod probes;
pub mod qos;
pub mod resolver;
pub mod simulated;
pub mod static_pods;
pub mod status;
pub mod volumes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use rkube_cri::{ImageService, RuntimeService};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::KubeletConfig;
use pods::{ClientPodApi, PodWorkers, Shared};

/// Errors that stop the kubelet from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory could not be created.
    #[error("creating {path}: {source} (check that the data dir is writable)")]
    Dir {
        /// The directory.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The kubelet port could not be bound.
    #[error(
        "binding the kubelet API on {addr}: {source} (is another kubelet running? choose another port with the kubelet port setting)"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The serving certificate could not be made.
    #[error("kubelet serving TLS: {0}")]
    Tls(String),
}

/// Aborts the kubelet's background tasks when `run` is dropped or returns, and stops the pod
/// workers without killing their containers (a restarted kubelet adopts them).
struct Background {
    tasks: Vec<JoinHandle<()>>,
    workers: Arc<PodWorkers>,
    shutdown: CancellationToken,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for t in &self.tasks {
            t.abort();
        }
        self.workers.detach_all();
    }
}

/// Runs the kubelet until the returned future is dropped: registers the node and keeps its
/// heartbeat, serves the kubelet API (logs, exec, attach, port-forward) on
/// `cfg.kubelet_port`, runs static pods from `cfg.pod_manifest_path` and the pods the API
/// binds to `cfg.node_name`.
pub async fn run(
    client: Client,
    cfg: KubeletConfig,
    runtime: Arc<dyn RuntimeService>,
    images: Arc<dyn ImageService>,
) -> Result<(), Error> {
    let cfg = Arc::new(cfg);
    for dir in [
        cfg.pod_logs_root(),
        cfg.kubelet_root().join("pods"),
        cfg.pod_manifest_path.clone(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let addr = std::net::SocketAddr::new(cfg.bind_address, cfg.kubelet_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let tls =
        rkube_streaming::kubelet_tls_config(&cfg.node_name, &cfg.node_ips, &cfg.client_ca_pem)
            .map_err(|e| Error::Tls(e.to_string()))?;

    let shared = Arc::new(Shared {
        runtime: runtime.clone(),
        images,
        client: Some(client.clone()),
        api: Arc::new(ClientPodApi(client.clone())),
        recorder: events::Recorder::for_node(client.clone(), &cfg.node_name),
        backoff: backoff::Backoff::default(),
        cfg: cfg.clone(),
        registry: pods::PodRegistry::default(),
        volumes: Some(volumes::VolumeManager::new(
            client.clone(),
            cfg.kubelet_root(),
        )),
    });
    let workers = PodWorkers::new(shared.clone());
    let mut bg = Background {
        tasks: Vec::new(),
        workers: workers.clone(),
        shutdown: CancellationToken::new(),
    };

    // Static pods first: they run even while the API is unreachable.
    let mut source =
        static_pods::StaticPods::new(cfg.pod_manifest_path.clone(), cfg.node_name.clone());
    for p in source.scan().added {
        workers.update(p);
    }
    let static_uids: HashSet<String> = source.pods.keys().cloned().collect();
    bg.tasks.push(tokio::spawn(static_pods::run(
        source,
        workers.clone(),
        Some(client.clone()),
        cfg.node_name.clone(),
        cfg.file_check_frequency,
    )));

    bg.tasks.push(tokio::spawn(rkube_streaming::serve(
        listener,
        Arc::new(tls),
        runtime.clone(),
        Arc::new(resolver::Resolver::new(shared.clone())),
    )));
    bg.tasks.push(tokio::spawn(logs::run(
        runtime.clone(),
        logs::Limits {
            max_size: cfg.max_container_log_size,
            max_files: cfg.max_container_log_files,
        },
    )));

    let node_cfg = node::NodeConfig {
        name: cfg.node_name.clone(),
        addresses: cfg.node_ips.clone(),
        kubelet_port: cfg.kubelet_port,
        control_plane: cfg.control_plane,
        labels: cfg.node_labels.clone(),
        taints: cfg.node_taints.clone(),
        data_dir: cfg.data_dir.clone(),
        runtime_version: runtime.version(),
    };
    let hb_client = client.clone();
    let shutdown = bg.shutdown.clone();
    bg.tasks.push(tokio::spawn(async move {
        loop {
            match node::register(&hb_client, &node_cfg).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "node registration failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        node::run_heartbeat(hb_client, node_cfg, shutdown).await;
    }));

    watch_api_pods(client, cfg.node_name.clone(), workers, static_uids).await;
    drop(bg);
    Ok(())
}

/// Feeds the pods bound to `node` to the workers; after the first full listing, removes what
/// the runtime holds for pods that no longer exist.
async fn watch_api_pods(
    client: Client,
    node: String,
    workers: Arc<PodWorkers>,
    static_uids: HashSet<String>,
) {
    let api: Api<Pod> = Api::all(client);
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, wc).default_backoff().boxed();
    let mut api_uids: HashSet<String> = HashSet::new();
    let mut listing: HashSet<String> = HashSet::new();
    let mut cleaned = false;
    let apply = |p: Pod, uids: &mut HashSet<String>| {
        if static_pods::is_mirror(&p) {
            return;
        }
        if let Some(uid) = &p.metadata.uid {
            uids.insert(uid.clone());
        }
        workers.update(p);
    };
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => apply(p, &mut listing),
            Ok(watcher::Event::InitDone) => {
                for gone in api_uids.difference(&listing) {
                    workers.remove(gone);
                }
                api_uids = std::mem::take(&mut listing);
                if !cleaned {
                    cleaned = true;
                    let mut known = api_uids.clone();
                    known.extend(static_uids.iter().cloned());
                    workers.cleanup_orphans(&known).await;
                }
            }
            Ok(watcher::Event::Apply(p)) => apply(p, &mut api_uids),
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = &p.metadata.uid
                    && !static_pods::is_mirror(&p)
                {
                    api_uids.remove(uid);
                    workers.remove(uid);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching this node's pods failed; retrying"),
        }
    }
}

#[cfg(test)]
mod run_tests;
