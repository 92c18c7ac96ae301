//! One pod's worker: a task that syncs the runtime onto the pod spec until the pod goes away,
//! then kills and cleans up what it ran (upstream's `podWorkerLoop` + `SyncPod` +
//! `SyncTerminatingPod` + `SyncTerminatedPod`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use rkube_cri::{ContainerConfig, Mount, PodSandboxConfig, SecurityContext, labels};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::actions::{ContainerKind, ProbeView, compute_pod_actions, find_container, pod_desc};
use super::images::{Puller, auths_from_dockerconfigjson};
use super::sandbox::{self, host_network, pod_log_dir};
use super::state::{PodRuntime, read_pod_runtime};
use crate::events::{NORMAL, WARNING, container_field_path};
use crate::probes::{ProbeKind, ProbeResults, Target, probe_worker, run_hook};
use crate::status::{StatusInput, compute_pod_status};

/// Upstream's maximum termination message length.
const MAX_TERMINATION_MESSAGE: usize = 4096;
/// Minimum spacing of repeated `BackOff` events for one container.
const BACKOFF_EVENT_SPACING: Duration = Duration::from_secs(10);
/// How often a static pod's status is re-sent even when unchanged (its mirror may be new).
const STATIC_STATUS_RESEND: Duration = Duration::from_secs(15);
/// How often projected volumes (configMap, secret…) are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(30);

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// Whether a pod came from a manifest file (static pod).
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/config.source"))
        .is_some_and(|s| s != "api")
}

fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    // Upstream gives containers at least a moment, even with gracePeriodSeconds=0 (2 s).
    Duration::from_secs(secs.max(2) as u64)
}

/// The worker's state.
pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    rx: watch::Receiver<Option<Pod>>,
    probes: Arc<ProbeResults>,
    probe_tasks: HashMap<(String, ProbeKind), JoinHandle<()>>,
    waiting: HashMap<String, (String, String)>,
    puller: Puller,
    messages: HashMap<String, String>,
    image_ids: HashMap<String, String>,
    last_status: Option<serde_json::Value>,
    last_status_at: Instant,
    terminal: bool,
    failure: Option<(String, String)>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    volumes_at: Instant,
    backoff_events: HashMap<String, Instant>,
    first_seen: jiff::Timestamp,
}

impl PodWorker {
    /// A worker for pod `uid` fed through `rx`.
    pub fn new(shared: Arc<Shared>, uid: String, rx: watch::Receiver<Option<Pod>>) -> PodWorker {
        PodWorker {
            shared,
            uid,
            rx,
            probes: Arc::new(ProbeResults::default()),
            probe_tasks: HashMap::new(),
            waiting: HashMap::new(),
            puller: Puller::default(),
            messages: HashMap::new(),
            image_ids: HashMap::new(),
            last_status: None,
            last_status_at: Instant::now(),
            terminal: false,
            failure: None,
            volumes: None,
            volumes_at: Instant::now(),
            backoff_events: HashMap::new(),
            first_seen: jiff::Timestamp::now(),
        }
    }

    /// Runs until the pod is gone (cleaned up) or the kubelet stops (containers left running).
    pub async fn run(mut self) {
        let mut last_pod: Option<Pod> = None;
        loop {
            let pod = self.rx.borrow_and_update().clone();
            match pod {
                None => {
                    // Gone from its source (deleted from the API, manifest removed).
                    if let Some(p) = &last_pod {
                        let grace = grace_period(p).min(Duration::from_secs(30));
                        self.terminate(p, grace, false).await;
                    } else {
                        self.cleanup_runtime_only().await;
                    }
                    break;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    let grace = grace_period(&p);
                    self.terminate(&p, grace, !is_static(&p)).await;
                    break;
                }
                Some(p) => {
                    self.sync(&p).await;
                    last_pod = Some(p);
                }
            }
            let probes = self.probes.clone();
            tokio::select! {
                r = self.rx.changed() => if r.is_err() {
                    // The kubelet is stopping: leave containers running for the next one.
                    break;
                },
                _ = probes.changed.notified() => {}
                _ = tokio::time::sleep(self.shared.cfg.sync_period) => {}
            }
        }
        for (_, t) in self.probe_tasks.drain() {
            t.abort();
        }
        self.shared.registry.remove(&self.uid);
    }

    fn sandbox_settings(&self) -> sandbox::DnsSettings {
        sandbox::DnsSettings {
            cluster_dns: self.shared.cfg.cluster_dns.clone(),
            cluster_domain: self.shared.cfg.cluster_domain.clone(),
            host_resolv_conf: std::fs::read_to_string(&self.shared.cfg.resolv_conf)
                .unwrap_or_default(),
        }
    }

    fn sandbox_config(&self, pod: &Pod, attempt: u32) -> PodSandboxConfig {
        let mut cfg = sandbox::sandbox_config(
            pod,
            attempt,
            &self.sandbox_settings(),
            &self.shared.cfg.pod_logs_root(),
        );
        cfg.cgroup_parent = crate::qos::pod_cgroup_parent(pod);
        cfg.resources = crate::qos::pod_resources(pod);
        cfg
    }

    fn pod_ips(&self, pod: &Pod, rt: &PodRuntime) -> Vec<IpAddr> {
        if host_network(pod) {
            return self.shared.cfg.node_ips.clone();
        }
        rt.sandbox()
            .filter(|s| s.ready)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    }

    /// One sync of a live pod.
    async fn sync(&mut self, pod: &Pod) {
        let rt_svc = self.shared.runtime.clone();
        let mut rt = match read_pod_runtime(rt_svc.as_ref(), &self.uid).await {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(pod = %pod_desc(pod), error = %e, "reading the pod's runtime state failed");
                return;
            }
        };
        let api_terminal = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if api_terminal && rt.containers.is_empty() && rt.sandboxes.is_empty() {
            // Finished before this kubelet saw it (or before a restart): nothing to run.
            self.terminal = true;
        }
        self.check_deadline(pod);
        if self.terminal || api_terminal {
            if rt.any_running() || rt.sandboxes.iter().any(|s| s.ready) {
                self.stop_all(pod, &rt, grace_period(pod)).await;
                rt = read_pod_runtime(rt_svc.as_ref(), &self.uid)
                    .await
                    .unwrap_or(rt);
            }
            self.terminal = true;
            self.waiting.clear();
            self.after_sync(pod, &rt).await;
            return;
        }

        // Volumes before anything runs (upstream waits for mounts before the sandbox).
        if !self.ensure_volumes(pod).await {
            self.after_sync(pod, &rt).await;
            return;
        }

        let verdicts = self.probes.all();
        let mut view = ProbeView::default();
        for c in rt.containers.iter().filter(|c| c.running()) {
            if let Some(v) = verdicts.get(&c.id) {
                if let Some(m) = &v.unhealthy {
                    view.unhealthy.insert(c.id.clone(), m.clone());
                }
                if v.started {
                    view.started.insert(c.id.clone());
                }
            }
        }
        let acts = compute_pod_actions(pod, &rt, &view, &self.shared.backoff, now_ns());
        self.waiting.clear();
        let mut changed = false;

        if acts.kill_pod {
            self.stop_all(pod, &rt, grace_period(pod)).await;
            changed = true;
        }
        for k in &acts.kill {
            if let Some(spec) = find_container(pod, &k.name) {
                self.shared.recorder.pod_event(
                    pod,
                    Some(container_field_path(pod, &spec.name)),
                    NORMAL,
                    "Killing",
                    k.message.clone(),
                );
            }
            if let Err(e) = rt_svc.stop_container(&k.id, grace_period(pod)).await {
                tracing::warn!(container = %k.id, error = %e, "stopping an unhealthy container failed");
            }
            changed = true;
        }
        if acts.terminal {
            self.stop_all(pod, &rt, grace_period(pod)).await;
            self.terminal = true;
            let rt = read_pod_runtime(rt_svc.as_ref(), &self.uid)
                .await
                .unwrap_or(rt);
            self.after_sync(pod, &rt).await;
            return;
        }

        // The sandbox.
        let (sandbox_id, sandbox_cfg, ips) = if acts.create_sandbox {
            if acts.start.is_empty() {
                self.after_sync(pod, &rt).await;
                return;
            }
            match self.create_sandbox(pod, acts.sandbox_attempt).await {
                Some(v) => {
                    changed = true;
                    v
                }
                None => {
                    self.after_sync(pod, &rt).await;
                    return;
                }
            }
        } else {
            let Some(sb) = rt.sandbox() else { return };
            let cfg = self.sandbox_config(pod, sb.attempt);
            (sb.id.clone(), cfg, self.pod_ips(pod, &rt))
        };

        for s in &acts.start {
            let Some(spec) = find_container(pod, &s.name).cloned() else {
                continue;
            };
            let ok = self
                .start_container(pod, &spec, s.attempt, &sandbox_id, &sandbox_cfg, &ips)
                .await;
            changed = true;
            if !ok && s.kind != ContainerKind::App {
                // Init containers go strictly in order.
                break;
            }
        }
        for w in &acts.waiting {
            self.waiting
                .insert(w.name.clone(), (w.reason.clone(), w.message.clone()));
            let due = self
                .backoff_events
                .get(&w.name)
                .is_none_or(|t| t.elapsed() >= BACKOFF_EVENT_SPACING);
            if due {
                self.backoff_events.insert(w.name.clone(), Instant::now());
                self.shared.recorder.pod_event(
                    pod,
                    Some(container_field_path(pod, &w.name)),
                    WARNING,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        w.name,
                        pod_desc(pod)
                    ),
                );
            }
        }
        if changed {
            rt = read_pod_runtime(rt_svc.as_ref(), &self.uid)
                .await
                .unwrap_or(rt);
        }
        self.gc_containers(&rt).await;
        self.after_sync(pod, &rt).await;
    }

    fn check_deadline(&mut self, pod: &Pod) {
        let Some(ads) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else {
            return;
        };
        if self.terminal {
            return;
        }
        let start = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or(self.first_seen);
        let elapsed = jiff::Timestamp::now().as_second() - start.as_second();
        if elapsed >= ads {
            let msg = "Pod was active on the node longer than the specified deadline".to_string();
            self.shared
                .recorder
                .pod_event(pod, None, NORMAL, "DeadlineExceeded", msg.clone());
            self.failure = Some(("DeadlineExceeded".into(), msg));
            self.terminal = true;
        }
    }

    async fn ensure_volumes(&mut self, pod: &Pod) -> bool {
        if self.volumes.is_some() {
            if self.volumes_at.elapsed() >= VOLUME_REFRESH {
                self.volumes_at = Instant::now();
                super::deps::refresh_volumes(&self.shared, pod).await;
            }
            return true;
        }
        match super::deps::setup_volumes(&self.shared, pod).await {
            Ok(v) => {
                self.volumes = Some(v);
                self.volumes_at = Instant::now();
                true
            }
            Err(msg) => {
                self.shared
                    .recorder
                    .pod_event(pod, None, WARNING, "FailedMount", msg);
                false
            }
        }
    }

    async fn create_sandbox(
        &mut self,
        pod: &Pod,
        attempt: u32,
    ) -> Option<(String, PodSandboxConfig, Vec<IpAddr>)> {
        let cfg = self.sandbox_config(pod, attempt);
        let pod_dir = self.shared.cfg.pod_dir(&self.uid);
        let _ = std::fs::create_dir_all(&pod_dir);
        let _ = std::fs::create_dir_all(&cfg.log_directory);
        let id = match self.shared.runtime.run_pod_sandbox(&cfg).await {
            Ok(id) => id,
            Err(e) => {
                self.shared.recorder.pod_event(
                    pod,
                    None,
                    WARNING,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                return None;
            }
        };
        let ips = if host_network(pod) {
            self.shared.cfg.node_ips.clone()
        } else {
            self.shared
                .runtime
                .pod_sandbox_status(&id)
                .await
                .map(|s| s.ips)
                .unwrap_or_default()
        };
        if !host_network(pod) {
            let hosts = sandbox::hosts_file(pod, &ips, &self.shared.cfg.cluster_domain);
            if let Err(e) = std::fs::write(pod_dir.join("etc-hosts"), hosts) {
                tracing::warn!(pod = %pod_desc(pod), error = %e, "writing etc-hosts failed");
            }
        }
        Some((id, cfg, ips))
    }

    /// Creates and starts one container; `false` when it could not be started.
    async fn start_container(
        &mut self,
        pod: &Pod,
        spec: &Container,
        attempt: u32,
        sandbox_id: &str,
        sandbox_cfg: &PodSandboxConfig,
        ips: &[IpAddr],
    ) -> bool {
        let fp = Some(container_field_path(pod, &spec.name));
        let rec = self.shared.recorder.clone();
        // The image.
        let auths = self.pull_secrets(pod).await;
        let image_result = self
            .puller
            .ensure(
                self.shared.images.as_ref(),
                pod,
                spec,
                &auths,
                &rec,
                &self.shared.backoff,
                now_ns(),
            )
            .await;
        if let Err(w) = image_result {
            self.waiting
                .insert(spec.name.clone(), (w.reason, w.message));
            return false;
        }
        // Environment (with the pod's IPs filled in for fieldRefs).
        let mut pod_with_ips = pod.clone();
        {
            let st = pod_with_ips.status.get_or_insert_with(Default::default);
            st.pod_ip = ips.first().map(|i| i.to_string());
            st.pod_ips = Some(
                ips.iter()
                    .map(|i| k8s_openapi::api::core::v1::PodIP { ip: i.to_string() })
                    .collect(),
            );
            st.host_ip = self.shared.cfg.node_ips.first().map(|i| i.to_string());
            st.host_ips = Some(
                self.shared
                    .cfg
                    .node_ips
                    .iter()
                    .map(|i| k8s_openapi::api::core::v1::HostIP { ip: i.to_string() })
                    .collect(),
            );
        }
        // Environment and mounts: either failing is the container's configuration error.
        let volumes = self.volumes.clone().unwrap_or_default();
        let config = super::deps::container_env(&self.shared, &pod_with_ips, spec)
            .await
            .and_then(|envs| {
                super::deps::container_mounts(pod, spec, &volumes, &envs).map(|m| (envs, m))
            });
        let (envs, mut mounts) = match config {
            Ok(c) => c,
            Err(msg) => {
                rec.pod_event(pod, fp.clone(), WARNING, "Failed", format!("Error: {msg}"));
                self.waiting.insert(
                    spec.name.clone(),
                    ("CreateContainerConfigError".into(), msg),
                );
                return false;
            }
        };
        let pod_dir = self.shared.cfg.pod_dir(&self.uid);
        let mounts_path = |p: &str, ms: &[Mount]| ms.iter().any(|m| m.container_path == p);
        if !host_network(pod) && !mounts_path("/etc/hosts", &mounts) {
            mounts.push(Mount {
                container_path: "/etc/hosts".into(),
                host_path: pod_dir.join("etc-hosts"),
                readonly: false,
                selinux_relabel: false,
            });
        }
        let term_path = spec
            .termination_message_path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/dev/termination-log".into());
        let term_host = termination_log_path(&pod_dir, &spec.name, attempt);
        if let Some(dir) = term_host.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if std::fs::write(&term_host, b"").is_ok() && !mounts_path(&term_path, &mounts) {
            mounts.push(Mount {
                container_path: term_path,
                host_path: term_host,
                readonly: false,
                selinux_relabel: false,
            });
        }
        let mut c_labels = sandbox::pod_labels(pod);
        c_labels.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "io.kubernetes.container.restartCount".to_string(),
            attempt.to_string(),
        );
        let config = ContainerConfig {
            name: spec.name.clone(),
            attempt,
            image: spec.image.clone().unwrap_or_default(),
            command: spec.command.clone().unwrap_or_default(),
            args: spec.args.clone().unwrap_or_default(),
            working_dir: spec.working_dir.clone().filter(|w| !w.is_empty()),
            envs: envs.clone(),
            mounts,
            labels: c_labels,
            annotations,
            log_path: PathBuf::from(format!("{}/{}.log", spec.name, attempt)),
            stdin: spec.stdin.unwrap_or(false),
            stdin_once: spec.stdin_once.unwrap_or(false),
            tty: spec.tty.unwrap_or(false),
            resources: crate::qos::container_resources(pod, spec),
            security: security_context(pod, spec),
        };
        let _ = std::fs::create_dir_all(sandbox_cfg.log_directory.join(&spec.name));
        let id = match self
            .shared
            .runtime
            .create_container(sandbox_id, &config, sandbox_cfg)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                let msg = e.to_string();
                rec.pod_event(pod, fp.clone(), WARNING, "Failed", format!("Error: {msg}"));
                self.waiting
                    .insert(spec.name.clone(), ("CreateContainerError".into(), msg));
                return false;
            }
        };
        rec.pod_event(pod, fp.clone(), NORMAL, "Created", "Container created");
        if let Err(e) = self.shared.runtime.start_container(&id).await {
            let msg = e.to_string();
            rec.pod_event(pod, fp.clone(), WARNING, "Failed", format!("Error: {msg}"));
            self.waiting
                .insert(spec.name.clone(), ("RunContainerError".into(), msg));
            return false;
        }
        rec.pod_event(pod, fp.clone(), NORMAL, "Started", "Container started");
        if let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = Target {
                runtime: self.shared.runtime.clone(),
                sandbox_id: sandbox_id.to_string(),
                container_id: id.clone(),
                pod_ip: ips.first().map(|i| i.to_string()).unwrap_or_default(),
            };
            if let Err(msg) = run_hook(&target, h, &pod_desc(pod), spec, grace_period(pod)).await {
                rec.pod_event(pod, fp.clone(), WARNING, "FailedPostStartHook", msg);
                rec.pod_event(pod, fp.clone(), NORMAL, "Killing", "FailedPostStartHook");
                let _ = self
                    .shared
                    .runtime
                    .stop_container(&id, grace_period(pod))
                    .await;
                return false;
            }
        }
        true
    }

    async fn pull_secrets(&self, pod: &Pod) -> Vec<rkube_cri::AuthConfig> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .map(|v| v.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        let Some(client) = &self.shared.client else {
            return Vec::new();
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(client.clone(), ns);
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for n in names {
            match api.get(&n).await {
                Ok(s) => {
                    for key in [".dockerconfigjson", ".dockercfg"] {
                        if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
                            out.extend(auths_from_dockerconfigjson(&v.0));
                        }
                    }
                }
                Err(_) => missing.push(n),
            }
        }
        if !missing.is_empty() {
            self.shared.recorder.pod_event(
                pod,
                None,
                WARNING,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        out
    }

    /// Stops every container (preStop hooks first) and the sandboxes.
    async fn stop_all(&mut self, pod: &Pod, rt: &PodRuntime, grace: Duration) {
        let mut tasks = Vec::new();
        for c in rt.containers.iter().filter(|c| c.running()) {
            let spec = find_container(pod, &c.name).cloned();
            let shared = self.shared.clone();
            let pod = pod.clone();
            let id = c.id.clone();
            let name = c.name.clone();
            let sandbox_id = c.sandbox_id.clone();
            let pod_ip = rt
                .sandbox()
                .and_then(|s| s.ips.first())
                .map(|i| i.to_string())
                .unwrap_or_default();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                if let Some(spec) = &spec
                    && let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
                {
                    let target = Target {
                        runtime: shared.runtime.clone(),
                        sandbox_id,
                        container_id: id.clone(),
                        pod_ip,
                    };
                    if let Err(msg) = run_hook(&target, h, &pod_desc(&pod), spec, grace).await {
                        shared.recorder.pod_event(
                            &pod,
                            Some(container_field_path(&pod, &name)),
                            WARNING,
                            "FailedPreStopHook",
                            msg,
                        );
                    }
                }
                shared.recorder.pod_event(
                    &pod,
                    Some(container_field_path(&pod, &name)),
                    NORMAL,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                let left = grace
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(2));
                if let Err(e) = shared.runtime.stop_container(&id, left).await {
                    tracing::warn!(container = %id, error = %e, "stopping a container failed");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        for sb in &rt.sandboxes {
            if let Err(e) = self.shared.runtime.stop_pod_sandbox(&sb.id).await {
                tracing::warn!(sandbox = %sb.id, error = %e, "stopping a sandbox failed");
            }
        }
    }

    /// Removes older exited containers (keeping the newest exited one per name for
    /// `logs --previous` and `lastState`) and sandboxes older than the two newest.
    async fn gc_containers(&self, rt: &PodRuntime) {
        let mut seen_exited: HashMap<&str, bool> = HashMap::new();
        for c in rt.containers.iter().filter(|c| c.finished()) {
            let kept = seen_exited.entry(c.name.as_str()).or_insert(false);
            if *kept {
                if self.shared.runtime.remove_container(&c.id).await.is_ok() {
                    // Its log goes with it (the runtime keeps it; upstream's GC removes it),
                    // so a crash loop does not pile up `<attempt>.log` files.
                    let _ = std::fs::remove_file(&c.log_path);
                    for f in crate::logs::rotated_files(&c.log_path) {
                        let _ = std::fs::remove_file(f);
                    }
                }
            } else {
                *kept = true;
            }
        }
        for sb in rt.sandboxes.iter().skip(2).filter(|s| !s.ready) {
            let _ = self.shared.runtime.remove_pod_sandbox(&sb.id).await;
        }
    }

    /// Probes, termination messages, image ids, the resolver registry and the status.
    async fn after_sync(&mut self, pod: &Pod, rt: &PodRuntime) {
        self.manage_probes(pod, rt);
        self.read_termination_messages(pod, rt);
        for c in &rt.containers {
            if !c.image_ref.is_empty() && !self.image_ids.contains_key(&c.image_ref) {
                let shown = match self.shared.images.image_status(&c.image_ref).await {
                    Ok(Some(img)) => img.repo_digests.first().cloned().unwrap_or(img.id),
                    _ => c.image_ref.clone(),
                };
                self.image_ids.insert(c.image_ref.clone(), shown);
            }
        }
        self.shared
            .registry
            .update(&self.uid, pod, rt, &self.shared.cfg.pod_logs_root());
        self.report_status(pod, rt).await;
    }

    fn manage_probes(&mut self, pod: &Pod, rt: &PodRuntime) {
        let running: HashMap<&str, &super::state::ContainerInfo> = rt
            .containers
            .iter()
            .filter(|c| c.running())
            .map(|c| (c.id.as_str(), c))
            .collect();
        self.probe_tasks.retain(|(id, _), t| {
            let keep = running.contains_key(id.as_str()) && !t.is_finished();
            if !keep {
                t.abort();
            }
            keep || t.is_finished() && running.contains_key(id.as_str())
        });
        self.probes.retain(&|id| running.contains_key(id));
        let pod_ip = self
            .pod_ips(pod, rt)
            .first()
            .map(|i| i.to_string())
            .unwrap_or_default();
        for c in running.values() {
            let Some(spec) = find_container(pod, &c.name) else {
                continue;
            };
            for (kind, present) in [
                (ProbeKind::Startup, spec.startup_probe.is_some()),
                (ProbeKind::Liveness, spec.liveness_probe.is_some()),
                (ProbeKind::Readiness, spec.readiness_probe.is_some()),
            ] {
                let key = (c.id.clone(), kind);
                if !present || self.probe_tasks.contains_key(&key) {
                    continue;
                }
                let target = Target {
                    runtime: self.shared.runtime.clone(),
                    sandbox_id: c.sandbox_id.clone(),
                    container_id: c.id.clone(),
                    pod_ip: pod_ip.clone(),
                };
                let task = tokio::spawn(probe_worker(
                    kind,
                    pod.clone(),
                    spec.clone(),
                    target,
                    self.probes.clone(),
                    self.shared.recorder.clone(),
                ));
                self.probe_tasks.insert(key, task);
            }
        }
    }

    fn read_termination_messages(&mut self, pod: &Pod, rt: &PodRuntime) {
        let pod_dir = self.shared.cfg.pod_dir(&self.uid);
        for c in rt.containers.iter().filter(|c| c.finished()) {
            if self.messages.contains_key(&c.id) {
                continue;
            }
            let mut msg = std::fs::read(termination_log_path(&pod_dir, &c.name, c.attempt))
                .map(|mut b| {
                    b.truncate(MAX_TERMINATION_MESSAGE);
                    String::from_utf8_lossy(&b).into_owned()
                })
                .unwrap_or_default();
            let fallback = find_container(pod, &c.name)
                .and_then(|s| s.termination_message_policy.as_deref())
                == Some("FallbackToLogsOnError");
            if msg.is_empty() && fallback && c.exit_code != 0 {
                msg = log_tail(&c.log_path, 80, 2048);
            }
            self.messages.insert(c.id.clone(), msg);
        }
    }

    async fn report_status(&mut self, pod: &Pod, rt: &PodRuntime) {
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.terminal
            && rt.containers.is_empty()
            && matches!(api_phase, Some("Succeeded" | "Failed"))
        {
            // A finished pod whose containers are gone (kubelet restart, cleanup): its last
            // reported status is the record; don't overwrite it with an empty one.
            return;
        }
        let ready: std::collections::HashSet<String> = self
            .probes
            .all()
            .into_iter()
            .filter(|(_, v)| v.ready)
            .map(|(k, _)| k)
            .collect();
        let started = self
            .probes
            .all()
            .into_iter()
            .filter(|(_, v)| v.started)
            .map(|(k, _)| k)
            .collect();
        let pod_ips = self.pod_ips(pod, rt);
        let runtime_type = self
            .shared
            .runtime
            .version()
            .split("://")
            .next()
            .unwrap_or("rkube")
            .to_string();
        let status = compute_pod_status(&StatusInput {
            pod,
            rt,
            waiting: &self.waiting,
            ready: &ready,
            started: &started,
            messages: &self.messages,
            image_ids: &self.image_ids,
            runtime_type: &runtime_type,
            host_ips: &self.shared.cfg.node_ips,
            pod_ips: &pod_ips,
            qos_class: crate::qos::qos_class(pod),
            failure: self.failure.clone(),
            terminal: self.terminal,
            now: jiff::Timestamp::now(),
        });
        let value = serde_json::to_value(&status).unwrap_or_default();
        let resend = is_static(pod) && self.last_status_at.elapsed() >= STATIC_STATUS_RESEND;
        if self.last_status.as_ref() == Some(&value) && !resend {
            return;
        }
        if self.shared.api.patch_status(pod, &value).await {
            self.last_status = Some(value);
            self.last_status_at = Instant::now();
        }
    }

    /// Kills everything of the pod, cleans up, and (for API pods) deletes it for good.
    async fn terminate(&mut self, pod: &Pod, grace: Duration, delete_from_api: bool) {
        let rt_svc = self.shared.runtime.clone();
        let rt = read_pod_runtime(rt_svc.as_ref(), &self.uid)
            .await
            .unwrap_or_default();
        for (_, t) in self.probe_tasks.drain() {
            t.abort();
        }
        self.stop_all(pod, &rt, grace).await;
        self.terminal = true;
        let rt_after = read_pod_runtime(rt_svc.as_ref(), &self.uid)
            .await
            .unwrap_or_default();
        self.read_termination_messages(pod, &rt_after);
        if delete_from_api {
            // The final status (containers terminated) before the pod goes away.
            self.report_status(pod, &rt_after).await;
        }
        for sb in &rt_after.sandboxes {
            if let Err(e) = rt_svc.remove_pod_sandbox(&sb.id).await {
                tracing::warn!(sandbox = %sb.id, error = %e, "removing a sandbox failed");
            }
        }
        super::deps::teardown_volumes(&self.shared, &self.uid).await;
        remove_pod_files(&self.shared.cfg.pod_dir(&self.uid));
        let _ = std::fs::remove_dir_all(pod_log_dir(&self.shared.cfg.pod_logs_root(), pod));
        self.shared.backoff.forget_prefix(&format!("{}/", self.uid));
        if delete_from_api {
            self.shared.api.delete_pod(pod).await;
        }
    }

    /// A pod known only from the runtime (an orphan): stop and remove what it left.
    async fn cleanup_runtime_only(&mut self) {
        cleanup_orphan(&self.shared, &self.uid).await;
    }
}

/// Stops and removes everything of pod `uid` that the runtime still holds, with its log and
/// pod directories.
pub async fn cleanup_orphan(shared: &Shared, uid: &str) {
    let rt = shared.runtime.as_ref();
    let Ok(sandboxes) = rt.list_pod_sandbox().await else {
        return;
    };
    for sb in sandboxes.iter().filter(|s| s.metadata.uid == uid) {
        if let Ok(cs) = rt.list_containers(Some(&sb.id)).await {
            for c in cs
                .iter()
                .filter(|c| c.state == rkube_cri::ContainerState::Running)
            {
                let _ = rt.stop_container(&c.id, Duration::from_secs(2)).await;
            }
        }
        let _ = rt.stop_pod_sandbox(&sb.id).await;
        let _ = rt.remove_pod_sandbox(&sb.id).await;
        let dir = shared.cfg.pod_logs_root().join(format!(
            "{}_{}_{}",
            sb.metadata.namespace, sb.metadata.name, sb.metadata.uid
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
    super::deps::teardown_volumes(shared, uid).await;
    remove_pod_files(&shared.cfg.pod_dir(uid));
}

/// Removes the kubelet's own files of a pod directory (never recursing into volumes, which may
/// still hold mounts if their teardown failed).
fn remove_pod_files(pod_dir: &std::path::Path) {
    let _ = std::fs::remove_file(pod_dir.join("etc-hosts"));
    let _ = std::fs::remove_dir_all(pod_dir.join("containers"));
    let _ = std::fs::remove_dir(pod_dir.join("volumes"));
    let _ = std::fs::remove_dir(pod_dir);
}

/// `<pod dir>/containers/<name>/<attempt>`: the host side of `/dev/termination-log`.
pub fn termination_log_path(pod_dir: &std::path::Path, name: &str, attempt: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(name)
        .join(format!("termination-log-{attempt}"))
}

/// The last `lines` lines (at most `max_bytes`) of a CRI-format log, without the CRI prefixes.
pub fn log_tail(path: &std::path::Path, lines: usize, max_bytes: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut out = String::new();
    for line in text.lines() {
        // `<timestamp> <stream> <P|F> <content>`
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, content) = (parts.next(), parts.next(), parts.next(), parts.next());
        out.push_str(content.unwrap_or_default());
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let all: Vec<&str> = out.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    let start = tail.len().saturating_sub(max_bytes);
    let mut s = start;
    while !tail.is_char_boundary(s) {
        s += 1;
    }
    tail[s..].to_string()
}

fn security_context(pod: &Pod, c: &Container) -> SecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let mut groups: Vec<u32> = psc
        .and_then(|p| p.supplemental_groups.as_ref())
        .map(|g| g.iter().filter_map(|g| u32::try_from(*g).ok()).collect())
        .unwrap_or_default();
    if let Some(fs) = to_u32(psc.and_then(|p| p.fs_group))
        && !groups.contains(&fs)
    {
        groups.push(fs);
    }
    let caps = csc.and_then(|s| s.capabilities.as_ref());
    SecurityContext {
        run_as_user: to_u32(
            csc.and_then(|s| s.run_as_user)
                .or(psc.and_then(|p| p.run_as_user)),
        ),
        run_as_group: to_u32(
            csc.and_then(|s| s.run_as_group)
                .or(psc.and_then(|p| p.run_as_group)),
        ),
        supplemental_groups: groups,
        privileged: csc.and_then(|s| s.privileged).unwrap_or(false),
        readonly_rootfs: csc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privs: csc.and_then(|s| s.allow_privilege_escalation) == Some(false),
    }
}
