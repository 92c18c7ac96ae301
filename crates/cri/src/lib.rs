//! The Container Runtime Interface, shaped as upstream's `k8s.io/cri-api` but as Rust traits.
//!
//! The kubelet talks only to these traits; `rkube-runtime` (containers) and `rkube-image`
//! (OCI images) implement them for the embedded runtime, and a containerd backend could
//! implement them over gRPC later. Field names follow the CRI protobufs so a reader can map
//! them one to one.
//!
//! Timestamps are nanoseconds since the Unix epoch, as in CRI.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

mod dockerconfig;
mod image;
mod network;

pub use dockerconfig::{DockerConfigError, auths_from_dockerconfigjson, decode_basic_auth};
pub use image::*;
pub use network::*;

/// Errors of a runtime or image service. The variants the kubelet reacts to differently
/// (an unknown object, a bad image, a bad container config) are kept apart; everything else
/// is `Internal` with a message meant for a human.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No sandbox, container or image with that id/name.
    #[error("{0} not found")]
    NotFound(String),
    /// The image could not be pulled (the registry's own error text is in the message); the
    /// kubelet reports `ErrImagePull` then `ImagePullBackOff`.
    #[error("{0}")]
    ImagePull(String),
    /// `imagePullPolicy: Never` and the image is not present (`ErrImageNeverPull`).
    #[error("{0}")]
    ImageNeverPull(String),
    /// The image reference cannot be parsed (`InvalidImageName`).
    #[error("{0}")]
    InvalidImageName(String),
    /// The container could not be created or started from its config (bad command, missing
    /// executable…); reported as `CreateContainerError` / `RunContainerError` / `StartError`.
    #[error("{0}")]
    Container(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

/// Result of runtime and image calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Labels the kubelet puts on sandboxes and containers so it can find its own objects again
/// after a restart (the same keys upstream's kubelet uses).
pub mod labels {
    /// Pod name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// Pod namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// Pod UID.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// Container name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
}

/// Identity of a pod sandbox.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodSandboxMetadata {
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Pod namespace.
    pub namespace: String,
    /// How many sandboxes this pod had before (0 for the first).
    pub attempt: u32,
}

/// `/etc/resolv.conf` of a pod.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// `search` domains.
    pub searches: Vec<String>,
    /// `options` entries, e.g. `ndots:5`.
    pub options: Vec<String>,
}

/// Namespace sharing of a pod (CRI `NamespaceOption`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum NamespaceMode {
    /// One namespace for the whole pod, held by the sandbox.
    #[default]
    Pod,
    /// Each container has its own.
    Container,
    /// The host's namespace.
    Node,
}

/// Which namespaces a pod's containers share (CRI `NamespaceOption`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// Network: `Pod` (own netns) or `Node` (`hostNetwork`).
    pub network: NamespaceMode,
    /// PID: `Container` (default), `Pod` (`shareProcessNamespace`) or `Node` (`hostPID`).
    pub pid: NamespaceMode,
    /// IPC: `Pod` or `Node` (`hostIPC`).
    pub ipc: NamespaceMode,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        NamespaceOptions {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
        }
    }
}

/// cgroup limits, in the units of CRI's `LinuxContainerResources` (the runtime maps them onto
/// cgroup v1 or v2 files).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinuxResources {
    /// CFS period in microseconds (0 = default 100000).
    pub cpu_period: i64,
    /// CFS quota in microseconds per period (0 = unlimited).
    pub cpu_quota: i64,
    /// cgroup v1 `cpu.shares` (v2 `cpu.weight` is derived from it as upstream does).
    pub cpu_shares: i64,
    /// Memory limit in bytes (0 = unlimited).
    pub memory_limit_in_bytes: i64,
    /// `oom_score_adj` of the container's processes (QoS-dependent, as upstream).
    pub oom_score_adj: i64,
    /// Maximum processes (0 = unlimited).
    pub pids_limit: i64,
}

/// The pod sandbox: namespaces shared by a pod's containers and the pod-level cgroup.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodSandboxConfig {
    /// Which pod this is.
    pub metadata: PodSandboxMetadata,
    /// Hostname inside the pod (the pod name, or `spec.hostname`).
    pub hostname: String,
    /// Directory holding the containers' log files (`/var/log/pods/<ns>_<name>_<uid>` upstream).
    pub log_directory: PathBuf,
    /// resolv.conf contents; `None` = use the host's (`dnsPolicy: Default` / hostNetwork).
    pub dns_config: Option<DnsConfig>,
    /// Namespace sharing.
    pub namespace_options: NamespaceOptions,
    /// Pod-level cgroup, relative to each hierarchy's root, e.g. `kubepods/burstable/pod<uid>`.
    pub cgroup_parent: String,
    /// Pod-level limits applied on `cgroup_parent` (sum of the containers', as upstream).
    pub resources: LinuxResources,
    /// Sysctls to set in the pod's namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// Labels (the `labels` module's keys among them).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// State of a sandbox.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum PodSandboxState {
    /// Its namespaces are held and containers can run in it.
    Ready,
    /// Stopped (or its holder died); only removal is left.
    NotReady,
}

/// A sandbox as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodSandbox {
    /// Runtime-assigned id.
    pub id: String,
    /// Which pod.
    pub metadata: PodSandboxMetadata,
    /// Ready or not.
    pub state: PodSandboxState,
    /// Creation time (ns since epoch).
    pub created_at: i64,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations given at creation.
    pub annotations: BTreeMap<String, String>,
}

/// Detailed sandbox status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodSandboxStatus {
    /// The listed fields.
    pub sandbox: PodSandbox,
    /// The pod's IPs, primary first (empty for host-network pods).
    pub ips: Vec<IpAddr>,
    /// Path of the pod's network namespace (e.g. `/proc/<pid>/ns/net` or a bind mount), for
    /// network plugins and port-forwarding; `None` for host-network pods.
    pub netns_path: Option<PathBuf>,
}

/// A bind mount into a container (CRI `Mount`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path inside the container.
    pub container_path: String,
    /// Path on the host (file or directory).
    pub host_path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
    /// SELinux relabel: unused, kept for CRI parity.
    pub selinux_relabel: bool,
}

/// A container's security settings (the parts of CRI's `LinuxContainerSecurityContext` rkube
/// honours).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityContext {
    /// UID to run as; `None` = the image's `User` (or root).
    pub run_as_user: Option<u32>,
    /// GID to run as; `None` = the image user's group (or 0).
    pub run_as_group: Option<u32>,
    /// Extra groups (pod `supplementalGroups` and `fsGroup`).
    pub supplemental_groups: Vec<u32>,
    /// All capabilities, all devices, no seccomp.
    pub privileged: bool,
    /// Root filesystem mounted read-only.
    pub readonly_rootfs: bool,
    /// Capabilities added to the default set (names like `NET_ADMIN`, without `CAP_`).
    pub add_capabilities: Vec<String>,
    /// Capabilities dropped (`ALL` drops every one).
    pub drop_capabilities: Vec<String>,
    /// `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privs: bool,
}

/// How to create a container (CRI `ContainerConfig`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Container name within the pod.
    pub name: String,
    /// Restart number (0 for the first run); upstream's `restartCount`.
    pub attempt: u32,
    /// Image reference as the pod spec names it (resolved through the image service).
    pub image: String,
    /// Overrides the image's ENTRYPOINT when non-empty (pod `command`).
    pub command: Vec<String>,
    /// Overrides the image's CMD when non-empty (pod `args`). As upstream: if `command` is
    /// set and `args` is empty, the image's CMD is not used.
    pub args: Vec<String>,
    /// Overrides the image's WorkingDir when set.
    pub working_dir: Option<String>,
    /// Environment, added over the image's (same name: this wins), in order.
    pub envs: Vec<(String, String)>,
    /// Bind mounts (volumes, /etc/hosts, /dev/termination-log…), in order.
    pub mounts: Vec<Mount>,
    /// Labels (the `labels` module's keys among them).
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Log file, relative to the sandbox's `log_directory` (upstream: `<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// Keep stdin open for `kubectl attach` / `-i`.
    pub stdin: bool,
    /// Close stdin after the first attach detaches.
    pub stdin_once: bool,
    /// Allocate a terminal.
    pub tty: bool,
    /// cgroup limits.
    pub resources: LinuxResources,
    /// Users, groups, capabilities.
    pub security: SecurityContext,
}

/// Container states (CRI `ContainerState`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its process runs.
    Running,
    /// Its process ended (see exit code and reason).
    Exited,
    /// The runtime lost track of it.
    Unknown,
}

/// A container as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Container {
    /// Runtime-assigned id.
    pub id: String,
    /// Sandbox it belongs to.
    pub pod_sandbox_id: String,
    /// Container name.
    pub name: String,
    /// Restart number given at creation.
    pub attempt: u32,
    /// Image as requested.
    pub image: String,
    /// Image id it runs (`sha256:…` of the config).
    pub image_ref: String,
    /// State.
    pub state: ContainerState,
    /// Creation time (ns).
    pub created_at: i64,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Annotations given at creation.
    pub annotations: BTreeMap<String, String>,
}

/// Detailed container status (CRI `ContainerStatus`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The listed fields.
    pub container: Container,
    /// Start time (ns; 0 if never started).
    pub started_at: i64,
    /// Exit time (ns; 0 if still running).
    pub finished_at: i64,
    /// Exit code (128+signal when killed by a signal).
    pub exit_code: i32,
    /// `OOMKilled`, `Error` or `Completed` when exited, as upstream reports them.
    pub reason: String,
    /// Human-readable detail (e.g. the start error).
    pub message: String,
    /// Absolute path of its log file.
    pub log_path: PathBuf,
    /// Host PID of its main process while running.
    pub pid: Option<u32>,
}

/// Output of a command run to completion in a container (CRI `ExecSync`), used by exec probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSyncResponse {
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit_code: i32,
}

/// What a streaming exec/attach asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Wire stdin.
    pub stdin: bool,
    /// Wire stdout.
    pub stdout: bool,
    /// Wire stderr (ignored with a TTY: the terminal carries both).
    pub stderr: bool,
    /// Allocate (exec) or use (attach) a terminal.
    pub tty: bool,
}

/// A terminal size change (`kubectl exec -it` sends these on the resize channel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// Boxed async byte streams of a streaming session.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// Boxed async writer (stdin).
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// A running exec or attach session. Dropping `stdin` closes the process's stdin (attach:
/// detaches without closing, unless `stdin_once`).
pub struct StreamingSession {
    /// The process's stdin, when asked for.
    pub stdin: Option<Writer>,
    /// Its stdout (with a TTY: the terminal's output).
    pub stdout: Option<Reader>,
    /// Its stderr (never with a TTY).
    pub stderr: Option<Reader>,
    /// Terminal size changes, when a TTY is used.
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
    /// Resolves to the exit code when the process ends (attach: when the container exits).
    pub exit: Pin<Box<dyn std::future::Future<Output = Result<i32>> + Send>>,
}

/// The runtime half of CRI: sandboxes, containers and streaming.
///
/// Implementations must keep containers alive independently of the caller: the kubelet may
/// restart and find them again through `list_pod_sandbox` / `list_containers`.
#[async_trait::async_trait]
pub trait RuntimeService: Send + Sync {
    /// Name and version of the runtime (`containerRuntimeVersion` in node info, e.g.
    /// `rkube://0.1.0`).
    fn version(&self) -> String;

    /// Creates a pod's namespaces and cgroup and sets up its network; returns the sandbox id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// Kills every container of the sandbox and releases its network; idempotent.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// Removes a stopped sandbox and everything it holds (containers, namespaces, cgroups,
    /// mounts, state); idempotent.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    /// A sandbox's status.
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus>;
    /// All sandboxes.
    async fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>>;

    /// Creates a container in a sandbox (rootfs, cgroup, config) without starting it.
    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String>;
    /// Starts a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Sends the stop signal (the image's `StopSignal`, else SIGTERM), waits up to `timeout`,
    /// then SIGKILLs; returns when the process is gone. Idempotent.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    /// Removes an exited container (rootfs, cgroup, state). Its log file stays.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Containers, of one sandbox when given.
    async fn list_containers(&self, pod_sandbox_id: Option<&str>) -> Result<Vec<Container>>;
    /// A container's status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Asks the runtime to reopen a container's log file (after the kubelet rotated it).
    async fn reopen_container_log(&self, id: &str) -> Result<()>;

    /// Runs a command in a running container to completion (exec probes, hooks).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResponse>;
    /// Starts a command in a running container with streams wired (`kubectl exec`).
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        opts: &StreamOptions,
    ) -> Result<StreamingSession>;
    /// Connects to a running container's main process (`kubectl attach`).
    async fn attach(&self, id: &str, opts: &StreamOptions) -> Result<StreamingSession>;
    /// A TCP connection to `port` on the pod's loopback, made inside its network namespace
    /// (`kubectl port-forward`).
    async fn port_forward(&self, pod_sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream>;
}
