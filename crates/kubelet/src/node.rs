//! The kubelet's Node: registration, the Lease heartbeat and node status.
//!
//! As upstream: the Node is created (or, when it exists, its default labels reconciled,
//! leaving `spec` — podCIDR, unschedulable, taints — to whoever set it), its Lease in
//! `kube-node-lease` is renewed every 10 s, and its status (conditions with real memory,
//! disk and PID pressure, capacity, addresses, nodeInfo) is written every 10 s when something
//! changed and at least every 5 minutes otherwise (`nodeStatusReportFrequency`). A deleted Node
//! is registered again.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::hostinfo::{self, HostCapacity};

/// How often the Lease is renewed and the status checked for changes (upstream's defaults).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time between two status writes when nothing changed (`nodeStatusReportFrequency`).
pub const STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// The Lease duration written.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// A pressure condition stays True this long after its threshold stops being crossed
/// (upstream's `evictionPressureTransitionPeriod`), so it does not flap.
pub const PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// Memory pressure below this much available memory (`memory.available<100Mi`).
pub const MEMORY_AVAILABLE_THRESHOLD_BYTES: u64 = hostinfo::EVICTION_MEMORY_BYTES;
/// Attempts at a status write that keeps conflicting (upstream `nodeStatusUpdateRetry`).
const STATUS_UPDATE_RETRIES: usize = 5;

/// What the kubelet registers its Node with (upstream's flags in brackets).
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    /// Node name (`--hostname-override`, else the host name).
    pub name: String,
    /// InternalIP addresses, primary first (`--node-ip`).
    pub addresses: Vec<IpAddr>,
    /// Port of the kubelet's API (`daemonEndpoints.kubeletEndpoint.Port`, 10250).
    pub kubelet_port: u16,
    /// Whether the node runs the control plane (`rkube server`): adds the
    /// `node-role.kubernetes.io/control-plane` and `…/master` labels as k3s does.
    pub control_plane: bool,
    /// Extra labels (`--node-label`).
    pub labels: BTreeMap<String, String>,
    /// Taints set at first registration (`--register-with-taints`, k3s `--node-taint`).
    pub taints: Vec<Taint>,
    /// The agent's data dir; its filesystem is the node filesystem (ephemeral-storage,
    /// disk pressure).
    pub data_dir: PathBuf,
    /// The container runtime's name and version (`rkube://0.1.0`).
    pub runtime_version: String,
}

/// Errors of registration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what} {name}: {source}")]
    Api {
        /// What was attempted.
        what: &'static str,
        /// The object.
        name: String,
        /// The failure.
        source: kube::Error,
    },
    /// The configuration cannot be registered.
    #[error("invalid node configuration: {0}")]
    Config(String),
}

fn api_err(what: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Api { what, name, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The labels the kubelet owns on its Node (upstream's default labels, plus k3s's roles on
/// servers), then the `--node-label`s.
pub fn node_labels(cfg: &NodeConfig) -> BTreeMap<String, String> {
    let arch = hostinfo::architecture();
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", cfg.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if cfg.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            "true".into(),
        );
        labels.insert("node-role.kubernetes.io/master".into(), "true".into());
    }
    labels.extend(cfg.labels.clone());
    labels
}

/// What the node observes about its resources, turned into the pressure conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    /// `MemAvailable` below 100Mi.
    pub memory: bool,
    /// The node filesystem below 10% available (or 5% of inodes free).
    pub disk: bool,
    /// Processes above 90% of `pid_max`.
    pub pid: bool,
}

impl Pressure {
    /// Reads the host now: `/proc/meminfo`, `statvfs` of `data_dir`, `/proc/loadavg`.
    pub fn observe(data_dir: &Path) -> Pressure {
        let memory = hostinfo::meminfo_kib("MemAvailable")
            .is_some_and(|k| k * 1024 < MEMORY_AVAILABLE_THRESHOLD_BYTES);
        let disk = hostinfo::fs_stats(data_dir).is_ok_and(|s| {
            let space = s.capacity_bytes > 0
                && s.available_bytes * 100 < s.capacity_bytes * hostinfo::EVICTION_NODEFS_PERCENT;
            let inodes = s.inodes > 0
                && s.inodes_free * 100 < s.inodes * hostinfo::EVICTION_NODEFS_INODES_PERCENT;
            space || inodes
        });
        let pid = hostinfo::pid_usage().is_some_and(|(used, max)| used * 10 > max * 9);
        Pressure { memory, disk, pid }
    }
}

/// Keeps pressure conditions up for [`PRESSURE_TRANSITION_PERIOD`] after the last observation
/// crossing a threshold.
#[derive(Debug, Default)]
struct PressureHistory {
    last: [Option<Instant>; 3],
}

impl PressureHistory {
    fn update(&mut self, seen: Pressure, now: Instant) -> Pressure {
        let flags = [seen.memory, seen.disk, seen.pid];
        let mut out = [false; 3];
        for i in 0..3 {
            if flags[i] {
                self.last[i] = Some(now);
            }
            out[i] =
                self.last[i].is_some_and(|t| now.duration_since(t) < PRESSURE_TRANSITION_PERIOD);
        }
        Pressure {
            memory: out[0],
            disk: out[1],
            pid: out[2],
        }
    }
}

/// Reason and message of each node condition, as upstream's kubelet writes them.
fn reason_message(kind: &str, status: bool) -> (&'static str, &'static str) {
    match (kind, status) {
        ("MemoryPressure", false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("MemoryPressure", true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        ("DiskPressure", false) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("DiskPressure", true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ("PIDPressure", false) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        ("PIDPressure", true) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
        ("Ready", true) => ("KubeletReady", "kubelet is posting ready status"),
        _ => ("KubeletNotReady", "kubelet is not ready"),
    }
}

/// The four node conditions for `pressure` and readiness at `now` (`Err` carries the NotReady
/// message, e.g. `container runtime is down`). A condition whose status is unchanged from
/// `previous` keeps its `lastTransitionTime`.
pub fn node_conditions(
    pressure: Pressure,
    ready: Result<(), &str>,
    previous: &[NodeCondition],
    now: jiff::Timestamp,
) -> Vec<NodeCondition> {
    [
        ("MemoryPressure", pressure.memory),
        ("DiskPressure", pressure.disk),
        ("PIDPressure", pressure.pid),
        ("Ready", ready.is_ok()),
    ]
    .into_iter()
    .map(|(kind, on)| {
        let status = if on { "True" } else { "False" };
        let (reason, mut message) = reason_message(kind, on);
        if let ("Ready", Err(why)) = (kind, ready) {
            message = why;
        }
        let transition = previous
            .iter()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    })
    .collect()
}

/// Whether two condition lists say the same thing (heartbeat times aside).
fn conditions_equal(a: &[NodeCondition], b: &[NodeCondition]) -> bool {
    let key = |c: &NodeCondition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        )
    };
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

/// The Node's `status` as JSON (conditions excluded): capacity, allocatable, addresses,
/// daemon endpoints, nodeInfo, phase.
fn status_body(cfg: &NodeConfig, capacity: &HostCapacity) -> Value {
    let mut addresses: Vec<Value> = cfg
        .addresses
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": cfg.name}));
    json!({
        "capacity": capacity.capacity(),
        "allocatable": capacity.allocatable(),
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.kubelet_port}},
        "nodeInfo": hostinfo::node_info(&cfg.runtime_version),
        "phase": "Running",
    })
}

/// The Lease object of node `name` owned by the Node with `node_uid`.
pub fn lease_object(name: &str, node_uid: Option<&str>, now: jiff::Timestamp) -> Lease {
    let mut lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS},
    }))
    .unwrap_or_default();
    if let Some(spec) = lease.spec.as_mut() {
        spec.renew_time = Some(MicroTime(now));
    }
    if let Some(uid) = node_uid {
        lease.metadata.owner_references = Some(vec![owner_reference(name, uid)]);
    }
    lease
}

fn owner_reference(
    name: &str,
    uid: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    }
}

/// Creates the Node (or reconciles the labels of an existing one, leaving its spec alone) and
/// writes its full status. Returns the Node as stored.
pub async fn register(client: &Client, cfg: &NodeConfig) -> Result<Node, Error> {
    if cfg.name.is_empty() {
        return Err(Error::Config(
            "the node name is empty (set --node-name)".into(),
        ));
    }
    let api: Api<Node> = Api::all(client.clone());
    let labels = node_labels(cfg);
    let annotations = json!({"volumes.kubernetes.io/controller-managed-attach-detach": "true"});
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": cfg.name, "labels": labels, "annotations": annotations},
        "spec": {},
    });
    if !cfg.taints.is_empty() {
        obj["spec"]["taints"] = json!(cfg.taints);
    }
    let node: Node = serde_json::from_value(obj)
        .map_err(|e| Error::Config(format!("building the Node object: {e}")))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!("registered node {}", cfg.name),
        Err(e) if is_status(&e, 409) => {
            // Already registered (a restart): reconcile our labels, keep everything else.
            let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
            api.patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(api_err("updating node", &cfg.name))?;
            tracing::info!(
                "node {} was already registered; labels reconciled",
                cfg.name
            );
        }
        Err(e) => return Err(api_err("registering node", &cfg.name)(e)),
    }
    let obs = Observed::now(cfg, Pressure::observe(&cfg.data_dir));
    write_status(&api, cfg, &obs, true).await
}

/// Reads the Node and writes its status (conditions merged into the ones others keep there),
/// retrying on write conflicts. With `force` false the write is skipped when nothing but the
/// heartbeat time would change; returns the Node as read or written.
/// What one status write reports.
struct Observed {
    capacity: HostCapacity,
    pressure: Pressure,
    ready: Result<(), String>,
    images: Option<Vec<ContainerImage>>,
}

impl Observed {
    fn now(cfg: &NodeConfig, pressure: Pressure) -> Observed {
        Observed {
            capacity: HostCapacity::read(&cfg.data_dir),
            pressure,
            ready: Ok(()),
            images: None,
        }
    }
}

async fn write_status(
    api: &Api<Node>,
    cfg: &NodeConfig,
    obs: &Observed,
    force: bool,
) -> Result<Node, Error> {
    let mut last_err = None;
    for _ in 0..STATUS_UPDATE_RETRIES {
        let current = api
            .get(&cfg.name)
            .await
            .map_err(api_err("reading node", &cfg.name))?;
        let status = current.status.clone().unwrap_or_default();
        let previous = status.conditions.clone().unwrap_or_default();
        let ours = node_conditions(
            obs.pressure,
            obs.ready.as_ref().map(|_| ()).map_err(String::as_str),
            &previous,
            jiff::Timestamp::now(),
        );
        let mut body = status_body(cfg, &obs.capacity);
        if let Some(images) = &obs.images {
            body["images"] = json!(images);
        }
        let changed = !conditions_equal(
            &previous
                .iter()
                .filter(|c| ours.iter().any(|o| o.type_ == c.type_))
                .cloned()
                .collect::<Vec<_>>(),
            &ours,
        ) || serde_json::to_value(&status.capacity).ok()
            != Some(body["capacity"].clone())
            || serde_json::to_value(&status.allocatable).ok() != Some(body["allocatable"].clone())
            || serde_json::to_value(&status.addresses).ok() != Some(body["addresses"].clone())
            || serde_json::to_value(&status.node_info).ok() != Some(body["nodeInfo"].clone())
            || (obs.images.is_some()
                && serde_json::to_value(&status.images).ok() != Some(body["images"].clone()));
        if !force && !changed {
            return Ok(current);
        }
        // Conditions others maintain (NetworkUnavailable…) stay; ours replace their namesakes.
        let mut conditions: Vec<NodeCondition> = previous
            .into_iter()
            .filter(|c| !ours.iter().any(|o| o.type_ == c.type_))
            .collect();
        conditions.extend(ours);
        let mut st = body;
        st["conditions"] = json!(conditions);
        // The resourceVersion makes the merge patch conditional: a concurrent writer's
        // conditions are never overwritten with a stale list.
        let mut patch = json!({"status": st});
        if let Some(rv) = &current.metadata.resource_version {
            patch["metadata"] = json!({"resourceVersion": rv});
        }
        match api
            .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(n) => return Ok(n),
            Err(e) if is_status(&e, 409) => last_err = Some(e),
            Err(e) => return Err(api_err("updating the status of node", &cfg.name)(e)),
        }
    }
    Err(api_err("updating the status of node", &cfg.name)(
        last_err.expect("a conflict was recorded"),
    ))
}

/// Creates or renews the node's Lease, owned by the Node with `node_uid`.
async fn renew_lease(client: &Client, name: &str, node_uid: &str) -> Result<(), Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = jiff::Timestamp::now();
    match api
        .get_opt(name)
        .await
        .map_err(api_err("reading lease", name))?
    {
        None => {
            let lease = lease_object(name, Some(node_uid), now);
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) => Ok(()), // renewed next time
                Err(e) => Err(api_err("creating lease", name)(e)),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(name.to_string());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(MicroTime(now));
            let owned = lease
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Node" && o.uid == node_uid);
            if !owned {
                // The Node was re-created: point the Lease at the new one, or the garbage
                // collector deletes it with the old.
                lease.metadata.owner_references = Some(vec![owner_reference(name, node_uid)]);
            }
            match api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(()), // next tick
                Err(e) => Err(api_err("renewing lease", name)(e)),
            }
        }
    }
}

/// Runs the node's heartbeat until `shutdown` is cancelled: every 10 s the Lease is renewed
/// and the status written if it changed (at least every 5 minutes regardless); a deleted Node
/// is registered again. Errors are logged and retried on the next tick.
pub async fn run_heartbeat(client: Client, cfg: NodeConfig, shutdown: CancellationToken) {
    run_heartbeat_every(client, cfg, shutdown, HEARTBEAT_INTERVAL).await
}

/// [`run_heartbeat`] with another period (tests; upstream's is always 10 s).
pub async fn run_heartbeat_every(
    client: Client,
    cfg: NodeConfig,
    shutdown: CancellationToken,
    every: Duration,
) {
    let opts = HeartbeatOptions {
        interval: Some(every),
        ..HeartbeatOptions::default()
    };
    run_heartbeat_with(client, cfg, shutdown, opts).await
}

/// Tells the heartbeat whether the node is ready: `Err(message)` posts Ready=False with reason
/// `KubeletNotReady` and that message (e.g. `container runtime is down`).
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Optional parts of the heartbeat.
#[derive(Clone, Default)]
pub struct HeartbeatOptions {
    /// Period of Lease renewals and status checks; `None` = 10 s.
    pub interval: Option<Duration>,
    /// Reports `status.images` from this image service (50 largest, as upstream).
    pub images: Option<Arc<dyn rkube_cri::ImageService>>,
    /// Decides the Ready condition; `None` = always ready.
    pub readiness: Option<ReadinessCheck>,
}

/// Most images listed in `status.images` (upstream `nodeStatusMaxImages`).
pub const MAX_NODE_STATUS_IMAGES: usize = 50;
/// Most names per image there (upstream `maxNamesPerImageInNodeStatus`).
const MAX_NAMES_PER_IMAGE: usize = 5;

/// `status.images`: the largest images first, each with its digests then tags.
pub fn node_images(images: &[rkube_cri::Image]) -> Vec<ContainerImage> {
    let mut sorted: Vec<&rkube_cri::Image> = images.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.size));
    sorted
        .into_iter()
        .take(MAX_NODE_STATUS_IMAGES)
        .map(|i| ContainerImage {
            names: Some(
                i.repo_digests
                    .iter()
                    .chain(i.repo_tags.iter())
                    .take(MAX_NAMES_PER_IMAGE)
                    .cloned()
                    .collect(),
            ),
            size_bytes: Some(i.size as i64),
        })
        .collect()
}

/// [`run_heartbeat`] with [`HeartbeatOptions`].
pub async fn run_heartbeat_with(
    client: Client,
    cfg: NodeConfig,
    shutdown: CancellationToken,
    opts: HeartbeatOptions,
) {
    let api: Api<Node> = Api::all(client.clone());
    let mut tick = tokio::time::interval(opts.interval.unwrap_or(HEARTBEAT_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut history = PressureHistory::default();
    let mut last_report: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let pressure = history.update(Pressure::observe(&cfg.data_dir), now);
        let mut obs = Observed::now(&cfg, pressure);
        if let Some(check) = &opts.readiness {
            obs.ready = check();
        }
        if let Some(images) = &opts.images {
            match images.list_images().await {
                Ok(list) => obs.images = Some(node_images(&list)),
                Err(e) => tracing::debug!("node heartbeat: listing images: {e}"),
            }
        }
        let force = last_report.is_none_or(|t| now.duration_since(t) >= STATUS_REPORT_FREQUENCY);
        let node = match write_status(&api, &cfg, &obs, force).await {
            Ok(n) => n,
            Err(Error::Api { source, .. }) if is_status(&source, 404) => {
                tracing::warn!("node {} was deleted; registering it again", cfg.name);
                match register(&client, &cfg).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("node heartbeat: {e}");
                continue;
            }
        };
        if force {
            last_report = Some(now);
        }
        if let Some(uid) = node.metadata.uid.as_deref()
            && let Err(e) = renew_lease(&client, &cfg.name, uid).await
        {
            tracing::warn!("node heartbeat: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            addresses: vec!["10.0.0.5".parse().unwrap()],
            kubelet_port: 10250,
            control_plane: true,
            labels: [("tier".to_string(), "a".to_string())].into(),
            taints: vec![],
            data_dir: std::env::temp_dir(),
            runtime_version: "rkube://0.1.0".into(),
        }
    }

    #[test]
    fn labels() {
        let l = node_labels(&cfg());
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["kubernetes.io/os"], "linux");
        assert_eq!(l["beta.kubernetes.io/arch"], "amd64");
        assert_eq!(l["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(l["node-role.kubernetes.io/master"], "true");
        assert_eq!(l["tier"], "a");
        let agent = NodeConfig {
            control_plane: false,
            ..cfg()
        };
        assert!(!node_labels(&agent).contains_key("node-role.kubernetes.io/master"));
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        let first = node_conditions(Pressure::default(), Ok(()), &[], t0);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let disk = Pressure {
            disk: true,
            ..Pressure::default()
        };
        let second = node_conditions(disk, Ok(()), &first, t1);
        let get = |v: &[NodeCondition], t: &str| v.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get(&second, "Ready").last_transition_time, Some(Time(t0)));
        assert_eq!(get(&second, "Ready").last_heartbeat_time, Some(Time(t1)));
        assert_eq!(
            get(&second, "DiskPressure").last_transition_time,
            Some(Time(t1))
        );
        assert_eq!(
            get(&second, "DiskPressure").reason.as_deref(),
            Some("KubeletHasDiskPressure")
        );
        assert!(!conditions_equal(&first, &second));
        assert!(conditions_equal(
            &first,
            &node_conditions(Pressure::default(), Ok(()), &first, t1)
        ));
    }

    #[test]
    fn not_ready_and_images() {
        let t0 = jiff::Timestamp::UNIX_EPOCH;
        let c = node_conditions(
            Pressure::default(),
            Err("container runtime is down"),
            &[],
            t0,
        );
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some("container runtime is down"));
        let img = |id: &str, size: u64| rkube_cri::Image {
            id: id.into(),
            repo_tags: vec![format!("docker.io/library/{id}:latest")],
            repo_digests: vec![format!("docker.io/library/{id}@sha256:00")],
            size,
        };
        let list = node_images(&[img("small", 10), img("big", 1000)]);
        assert_eq!(list[0].size_bytes, Some(1000));
        assert_eq!(
            list[0].names.as_ref().unwrap(),
            &vec![
                "docker.io/library/big@sha256:00".to_string(),
                "docker.io/library/big:latest".to_string()
            ]
        );
    }

    #[test]
    fn pressure_lingers() {
        let mut h = PressureHistory::default();
        let t = Instant::now();
        let on = Pressure {
            memory: true,
            ..Pressure::default()
        };
        assert!(h.update(on, t).memory);
        assert!(
            h.update(Pressure::default(), t + Duration::from_secs(60))
                .memory
        );
        assert!(
            !h.update(Pressure::default(), t + Duration::from_secs(301))
                .memory
        );
    }

    #[test]
    fn lease_shape() {
        let l = lease_object("n1", Some("uid-1"), jiff::Timestamp::UNIX_EPOCH);
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let o = &l.metadata.owner_references.unwrap()[0];
        assert_eq!((o.kind.as_str(), o.uid.as_str()), ("Node", "uid-1"));
    }

    #[test]
    fn status_shape() {
        let h = HostCapacity {
            cpu: 2,
            memory_bytes: 1 << 30,
            ephemeral_storage_bytes: 1 << 40,
            pods: 110,
        };
        let s = status_body(&cfg(), &h);
        assert_eq!(
            s["addresses"][0],
            json!({"type": "InternalIP", "address": "10.0.0.5"})
        );
        assert_eq!(
            s["addresses"][1],
            json!({"type": "Hostname", "address": "n1"})
        );
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(s["capacity"]["memory"], "1Gi");
        assert_eq!(s["allocatable"]["memory"], "924Mi");
        assert_eq!(s["nodeInfo"]["kubeletVersion"], hostinfo::KUBELET_VERSION);
    }
}
