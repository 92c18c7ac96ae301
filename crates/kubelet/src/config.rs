//! The kubelet's configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

/// What `run` needs to know (upstream's KubeletConfiguration subset rkube uses).
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Node name.
    pub node_name: String,
    /// The agent data dir (`<data-dir>/agent/...` holds logs, pod dirs, manifests).
    pub data_dir: PathBuf,
    /// Port of the kubelet API (logs, exec, attach, port-forward): 10250.
    pub kubelet_port: u16,
    /// Address the kubelet API listens on (all by default).
    pub bind_address: IpAddr,
    /// The node's InternalIPs, primary first (also `hostIP` of pods).
    pub node_ips: Vec<IpAddr>,
    /// Cluster DNS servers (`10.43.0.10`).
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Whether this node runs the control plane.
    pub control_plane: bool,
    /// CA bundle (PEM) whose client certificates may call the kubelet API.
    pub client_ca_pem: String,
    /// Static pod manifests directory (`<data-dir>/agent/pod-manifests`).
    pub pod_manifest_path: PathBuf,
    /// How often the manifests directory is re-read.
    pub file_check_frequency: Duration,
    /// Rotate a container log above this size (10 MiB).
    pub max_container_log_size: u64,
    /// Keep at most this many log files per container (5).
    pub max_container_log_files: usize,
    /// The host's resolv.conf (`dnsPolicy: Default` and search-path inheritance).
    pub resolv_conf: PathBuf,
    /// How often a pod worker re-syncs without news (upstream's PLEG relist period).
    pub sync_period: Duration,
    /// Extra node labels (`--node-label`).
    pub node_labels: BTreeMap<String, String>,
    /// Taints set at first registration (`--node-taint`).
    pub node_taints: Vec<Taint>,
}

impl KubeletConfig {
    /// Defaults for node `node_name` with data under `data_dir`.
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> KubeletConfig {
        let data_dir = data_dir.into();
        KubeletConfig {
            node_name: node_name.into(),
            pod_manifest_path: data_dir.join("agent/pod-manifests"),
            data_dir,
            kubelet_port: 10250,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            node_ips: Vec::new(),
            cluster_dns: vec![IpAddr::from([10, 43, 0, 10])],
            cluster_domain: "cluster.local".into(),
            control_plane: false,
            client_ca_pem: String::new(),
            file_check_frequency: Duration::from_secs(10),
            max_container_log_size: 10 * 1024 * 1024,
            max_container_log_files: 5,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            sync_period: Duration::from_secs(1),
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
        }
    }

    /// `<data-dir>/agent/logs/pods`.
    pub fn pod_logs_root(&self) -> PathBuf {
        self.data_dir.join("agent/logs/pods")
    }

    /// `<data-dir>/agent/kubelet`.
    pub fn kubelet_root(&self) -> PathBuf {
        self.data_dir.join("agent/kubelet")
    }

    /// `<data-dir>/agent/kubelet/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.kubelet_root().join("pods").join(uid)
    }
}
