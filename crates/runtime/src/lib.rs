//! rkube's embedded container runtime.
//!
//! Every pod gets a small supervisor process (the "shim", see [`run_shim_if_requested`])
//! that holds the pod's namespaces, starts and reaps its containers, records their exits and
//! writes their logs. The runtime itself ([`EmbeddedRuntime`]) keeps no state in memory: it
//! reads `<root>` and talks to the shims over their sockets, so an agent restart (a new
//! `EmbeddedRuntime` on the same root) finds every pod still running.
//!
//! Containers are built with plain syscalls: fresh mount and PID namespaces, an overlayfs
//! rootfs over the image's layers, pivot_root, cgroups v1 or v2, capabilities.

#![warn(missing_docs)]

mod cgroups;
mod container;
mod exec;
mod logs;
mod netns;
mod network;
mod shim;
mod state;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rkube_cri::{
    Container, ContainerConfig, ContainerState, ContainerStatus, Error, ExecSyncResponse,
    ImageLookup, NamespaceMode, PodNetwork, PodSandbox, PodSandboxConfig, PodSandboxState,
    PodSandboxStatus, Result, RuntimeService, StreamOptions, StreamingSession,
};
use tokio::io::AsyncReadExt;

pub use network::LoopbackNetwork;
pub use shim::{SHIM_ARG, run_shim_if_requested};

use cgroups::Cgroups;
use shim::protocol::{self, Request, Response};
use state::{ContainerRun, ContainerSpec, Paths, SandboxRecord, now_ns, read_json, write_json};

/// How long a plain request to a shim may take before it counts as dead.
const SHIM_TIMEOUT: Duration = Duration::from_secs(10);

/// runc's prefix of start errors, as the kubelet shows them in `RunContainerError`.
const START_ERROR_PREFIX: &str = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: ";

/// The embedded runtime: implements [`RuntimeService`] over per-pod shims.
#[derive(Clone)]
pub struct EmbeddedRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    images: Arc<dyn ImageLookup>,
    network: Arc<dyn PodNetwork>,
    cgroups: Cgroups,
}

impl EmbeddedRuntime {
    /// A runtime whose state lives under `root` (`<data-dir>/agent/runtime`). Sandboxes and
    /// containers already there (from a previous agent) are adopted as they are.
    pub fn new(
        root: PathBuf,
        images: Arc<dyn ImageLookup>,
        network: Arc<dyn PodNetwork>,
    ) -> Result<Self> {
        let paths = Paths::new(&root);
        for d in [paths.sandboxes(), paths.containers()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::Internal(format!("creating {}: {e}", d.display())))?;
        }
        let cgroups = Cgroups::detect().map_err(|e| Error::Internal(e.to_string()))?;
        Ok(EmbeddedRuntime {
            inner: Arc::new(Inner {
                paths,
                images,
                network,
                cgroups,
            }),
        })
    }

    /// The runtime's state directory.
    pub fn root(&self) -> &Path {
        &self.inner.paths.root
    }

    /// Host directories of a cgroup path (one per hierarchy in use), for diagnostics and
    /// tests.
    pub fn cgroup_dirs(&self, path: &str) -> Vec<PathBuf> {
        self.inner.cgroups.dirs(path)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Internal(format!("runtime task failed: {e}")))?
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

fn unmount(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: umount2 on a valid C string; failure (not mounted) is fine.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

fn resolv_conf(cfg: &PodSandboxConfig) -> String {
    let Some(dns) = &cfg.dns_config else {
        return host_resolv_conf();
    };
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for ns in &dns.servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    s
}

impl Inner {
    fn sandbox(&self, id: &str) -> Result<SandboxRecord> {
        if id.is_empty() || id.contains('/') {
            return Err(Error::NotFound(format!("pod sandbox {id:?}")));
        }
        read_json(&self.paths.sandbox(id).join("sandbox.json"))
            .map_err(internal)?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id}")))
    }

    fn spec(&self, id: &str) -> Result<ContainerSpec> {
        if id.is_empty() || id.contains('/') {
            return Err(Error::NotFound(format!("container {id:?}")));
        }
        read_json(&self.paths.container(id).join("spec.json"))
            .map_err(internal)?
            .ok_or_else(|| Error::NotFound(format!("container {id}")))
    }

    fn run_state(&self, id: &str) -> Option<ContainerRun> {
        read_json(&self.paths.container(id).join("state.json"))
            .ok()
            .flatten()
    }

    fn sock(&self, sandbox_id: &str) -> PathBuf {
        self.paths.sandbox(sandbox_id).join("shim.sock")
    }

    fn call(
        &self,
        sandbox_id: &str,
        req: &Request,
    ) -> Result<(Response, Vec<OwnedFd>, protocol::Conn)> {
        protocol::call(&self.sock(sandbox_id), req, Some(SHIM_TIMEOUT)).map_err(|e| {
            Error::Internal(format!(
                "pod supervisor of sandbox {sandbox_id} is not reachable: {e}"
            ))
        })
    }

    /// A request that must succeed; a container error keeps its kind.
    fn call_ok(
        &self,
        sandbox_id: &str,
        req: &Request,
    ) -> Result<(Response, Vec<OwnedFd>, protocol::Conn)> {
        let (resp, fds, conn) = self.call(sandbox_id, req)?;
        if let Some(e) = &resp.error {
            return Err(if resp.container_error {
                Error::Container(e.clone())
            } else {
                Error::Internal(e.clone())
            });
        }
        Ok((resp, fds, conn))
    }

    fn shim_alive(&self, sandbox_id: &str) -> bool {
        protocol::call(
            &self.sock(sandbox_id),
            &Request::Ping,
            Some(Duration::from_secs(2)),
        )
        .is_ok_and(|(r, _, _)| r.error.is_none())
    }

    fn stopped(&self, sandbox_id: &str) -> bool {
        self.paths.sandbox(sandbox_id).join("stopped").exists()
    }

    /// The shim's PID if that process is still our shim for this sandbox.
    fn shim_process(&self, rec: &SandboxRecord) -> Option<i32> {
        if rec.shim_pid == 0 {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", rec.shim_pid)).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.get(1) == Some(&shim::SHIM_ARG.as_bytes())
            && args.get(3) == Some(&rec.id.as_bytes());
        ours.then_some(rec.shim_pid as i32)
    }

    fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let id = state::new_id().map_err(internal)?;
        let dir = self.paths.sandbox(&id);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let result = self.setup_sandbox(&id, &dir, config);
        if let Err(e) = result {
            let _ = self.remove_pod_sandbox(&id);
            return Err(e);
        }
        Ok(id)
    }

    fn setup_sandbox(&self, id: &str, dir: &Path, config: &PodSandboxConfig) -> Result<()> {
        let cgroup = if config.cgroup_parent.trim_matches('/').is_empty() {
            format!("rkube/{id}")
        } else {
            config.cgroup_parent.trim_matches('/').to_string()
        };
        let host_net = config.namespace_options.network == NamespaceMode::Node;
        std::fs::write(dir.join("resolv.conf"), resolv_conf(config)).map_err(internal)?;
        let hostname = if host_net || config.hostname.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim()
                .to_string()
        } else {
            config.hostname.clone()
        };
        std::fs::write(dir.join("hostname"), format!("{hostname}\n")).map_err(internal)?;
        let mut rec = SandboxRecord {
            id: id.to_string(),
            created_at: now_ns(),
            config: config.clone(),
            cgroup,
            shim_pid: 0,
            ips: Vec::new(),
        };
        write_json(&dir.join("sandbox.json"), &rec).map_err(internal)?;
        self.cgroups
            .create(&rec.cgroup, &config.resources)
            .map_err(internal)?;
        rec.shim_pid = shim::launch(&self.paths.root, id).map_err(Error::Internal)?;
        write_json(&dir.join("sandbox.json"), &rec).map_err(internal)?;
        if !host_net {
            rec.ips = self
                .network
                .setup(&config.metadata, id, &dir.join("netns"))?;
            write_json(&dir.join("sandbox.json"), &rec).map_err(internal)?;
        }
        Ok(())
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<ContainerSpec> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.paths.containers()) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if let Ok(spec) = self.spec(&id)
                    && spec.sandbox_id == sandbox_id
                {
                    out.push(spec);
                }
            }
        }
        out
    }

    /// Marks containers that were running when their shim vanished as exited.
    fn record_lost(&self, spec: &ContainerSpec, message: &str) {
        if let Some(mut run) = self.run_state(&spec.id)
            && run.finished_at == 0
        {
            run.finished_at = now_ns();
            run.exit_code = 137;
            run.reason = "Error".into();
            run.message = message.into();
            let _ = write_json(&self.paths.container(&spec.id).join("state.json"), &run);
        }
    }

    fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = self.sandbox(id)?;
        let dir = self.paths.sandbox(id);
        if self.shim_alive(id) {
            // The shim kills every container and records their exits before it answers.
            let _ = protocol::call(
                &self.sock(id),
                &Request::Shutdown,
                Some(Duration::from_secs(30)),
            );
        }
        if let Some(pid) = self.shim_process(&rec) {
            // SAFETY: kill(2) on our own shim process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for spec in self.containers_of(id) {
            self.cgroups.kill_all(&spec.cgroup, Duration::from_secs(5));
            self.record_lost(&spec, "killed while the pod's supervisor was not running");
        }
        let netns = dir.join("netns");
        let netns_exists = netns.exists();
        if rec.config.namespace_options.network != NamespaceMode::Node {
            self.network.teardown(
                &rec.config.metadata,
                id,
                netns_exists.then_some(netns.as_path()),
            )?;
        }
        if netns_exists {
            unmount(&netns);
            let _ = std::fs::remove_file(&netns);
        }
        std::fs::write(dir.join("stopped"), b"").map_err(internal)?;
        Ok(())
    }

    fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let dir = self.paths.sandbox(id);
        if id.is_empty() || id.contains('/') || !dir.exists() {
            return Ok(());
        }
        if dir.join("sandbox.json").exists() {
            self.stop_pod_sandbox(id)?;
        }
        for spec in self.containers_of(id) {
            self.remove_container_files(&spec)?;
        }
        let rec = self.sandbox(id).ok();
        unmount(&dir.join("shm"));
        unmount(&dir.join("netns"));
        if let Some(rec) = &rec {
            self.cgroups.remove(&rec.cgroup).map_err(internal)?;
        }
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("removing {}: {e}", dir.display())))?;
        Ok(())
    }

    fn sandbox_state(&self, id: &str) -> PodSandboxState {
        if !self.stopped(id) && self.shim_alive(id) {
            PodSandboxState::Ready
        } else {
            PodSandboxState::NotReady
        }
    }

    fn list_entry(&self, rec: &SandboxRecord) -> PodSandbox {
        PodSandbox {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: self.sandbox_state(&rec.id),
            created_at: rec.created_at,
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }
    }

    fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let rec = self.sandbox(id)?;
        let netns = self.paths.sandbox(id).join("netns");
        Ok(PodSandboxStatus {
            sandbox: self.list_entry(&rec),
            ips: rec.ips.clone(),
            netns_path: (rec.config.namespace_options.network != NamespaceMode::Node
                && netns.exists())
            .then_some(netns),
        })
    }

    fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.paths.sandboxes())
            .map_err(internal)?
            .flatten()
        {
            if let Ok(rec) = self.sandbox(&e.file_name().to_string_lossy()) {
                out.push(self.list_entry(&rec));
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let rec = self.sandbox(sandbox_id)?;
        if self.stopped(sandbox_id) {
            return Err(Error::Container(format!(
                "pod sandbox {sandbox_id} is stopped: cannot create containers in it"
            )));
        }
        for other in self.containers_of(sandbox_id) {
            if other.config.name == config.name && other.config.attempt == config.attempt {
                return Err(Error::Container(format!(
                    "the container name \"{}_{}\" is already in use by container {}: remove it first",
                    config.name, config.attempt, other.id
                )));
            }
        }
        let image = self.images.resolve(&config.image)?;
        let args = container::merge_args(&image.config, config);
        if args.is_empty() {
            return Err(Error::Container(format!(
                "no command specified: image {} has no ENTRYPOINT or CMD and the container sets no command",
                config.image
            )));
        }
        let hostname = std::fs::read_to_string(self.paths.sandbox(sandbox_id).join("hostname"))
            .unwrap_or_default();
        let id = state::new_id().map_err(internal)?;
        let log_dir = if sandbox_config.log_directory.as_os_str().is_empty() {
            &rec.config.log_directory
        } else {
            &sandbox_config.log_directory
        };
        let log_path = if log_dir.as_os_str().is_empty() || config.log_path.as_os_str().is_empty() {
            self.paths.container(&id).join("container.log")
        } else {
            log_dir.join(&config.log_path)
        };
        let spec = ContainerSpec {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            created_at: now_ns(),
            config: config.clone(),
            image_id: image.id.clone(),
            layers: image.layers.clone(),
            args,
            env: container::merge_env(&image.config, config, hostname.trim()),
            cwd: if image.config.working_dir.is_empty() {
                "/".into()
            } else {
                image.config.working_dir.clone()
            },
            image_user: image.config.user.clone(),
            stop_signal: container::parse_signal(&image.config.stop_signal)
                .map_err(Error::Container)?,
            cgroup: format!("{}/{id}", rec.cgroup),
            log_path,
            capabilities: container::caps::resolve(&config.security).map_err(Error::Container)?,
        };
        let dir = self.paths.container(&id);
        let made = (|| -> Result<()> {
            for d in ["rootfs", "upper", "work"] {
                std::fs::create_dir_all(dir.join(d)).map_err(internal)?;
            }
            self.cgroups
                .create(&spec.cgroup, &config.resources)
                .map_err(internal)?;
            write_json(&dir.join("spec.json"), &spec).map_err(internal)
        })();
        if let Err(e) = made {
            let _ = self.cgroups.remove(&spec.cgroup);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(id)
    }

    fn start_container(&self, id: &str) -> Result<()> {
        let spec = self.spec(id)?;
        if self.run_state(id).is_some() {
            return Err(Error::Container(format!(
                "container {id} was already started (its state is not Created)"
            )));
        }
        if self.stopped(&spec.sandbox_id) {
            return Err(Error::Container(format!(
                "pod sandbox {} is stopped",
                spec.sandbox_id
            )));
        }
        match self.call_ok(&spec.sandbox_id, &Request::Start { id: id.to_string() }) {
            Ok(_) => Ok(()),
            Err(Error::Container(msg)) => {
                let run = ContainerRun {
                    finished_at: now_ns(),
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: format!("{START_ERROR_PREFIX}{msg}: unknown"),
                    ..Default::default()
                };
                let _ = write_json(&self.paths.container(id).join("state.json"), &run);
                Err(Error::Container(run.message))
            }
            Err(e) => Err(e),
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.run_state(id)
            .is_some_and(|r| r.pid != 0 && r.finished_at == 0)
    }

    /// Waits for the container's exit through the shim; true if it exited within `timeout`.
    fn wait_exit(&self, spec: &ContainerSpec, timeout: Duration) -> bool {
        let req = Request::Wait {
            id: spec.id.clone(),
        };
        match protocol::call(
            &self.sock(&spec.sandbox_id),
            &req,
            Some(timeout.max(Duration::from_millis(1))),
        ) {
            Ok((resp, _, mut conn)) if resp.exit_code.is_none() && resp.error.is_none() => {
                conn.recv_line::<Response>().is_ok()
            }
            Ok(_) => true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                !self.is_running(&spec.id)
            }
            // The shim is gone: nothing supervises the container any more.
            Err(_) => true,
        }
    }

    fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let spec = self.spec(id)?;
        if !self.is_running(id) {
            return Ok(());
        }
        if !self.shim_alive(&spec.sandbox_id) {
            self.cgroups.kill_all(&spec.cgroup, Duration::from_secs(5));
            self.record_lost(&spec, "killed while the pod's supervisor was not running");
            return Ok(());
        }
        if !timeout.is_zero() {
            let kill = Request::Kill {
                id: id.to_string(),
                signal: spec.stop_signal,
                all: false,
            };
            self.call_ok(&spec.sandbox_id, &kill)?;
            if self.wait_exit(&spec, timeout) && !self.is_running(id) {
                return Ok(());
            }
        }
        let kill = Request::Kill {
            id: id.to_string(),
            signal: libc::SIGKILL,
            all: true,
        };
        self.call_ok(&spec.sandbox_id, &kill)?;
        if !self.wait_exit(&spec, Duration::from_secs(30)) {
            return Err(Error::Internal(format!(
                "container {id} did not exit after SIGKILL within 30s"
            )));
        }
        Ok(())
    }

    fn remove_container_files(&self, spec: &ContainerSpec) -> Result<()> {
        let _ = self.call(
            &spec.sandbox_id,
            &Request::Remove {
                id: spec.id.clone(),
            },
        );
        self.cgroups.remove(&spec.cgroup).map_err(internal)?;
        let dir = self.paths.container(&spec.id);
        unmount(&dir.join("rootfs"));
        std::fs::remove_dir_all(&dir)
            .map_err(|e| Error::Internal(format!("removing {}: {e}", dir.display())))
    }

    fn remove_container(&self, id: &str) -> Result<()> {
        let spec = match self.spec(id) {
            Ok(s) => s,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // CRI: a running container is removed by force.
        if self.is_running(id) {
            self.stop_container(id, Duration::ZERO)?;
        }
        self.remove_container_files(&spec)
    }

    fn container_entry(
        &self,
        spec: &ContainerSpec,
        alive: &mut HashMap<String, bool>,
    ) -> (Container, ContainerRun) {
        let run = self.run_state(&spec.id);
        let state = match &run {
            None => ContainerState::Created,
            Some(r) if r.finished_at > 0 => ContainerState::Exited,
            Some(_) => {
                let ok = *alive
                    .entry(spec.sandbox_id.clone())
                    .or_insert_with(|| self.shim_alive(&spec.sandbox_id));
                if ok {
                    ContainerState::Running
                } else {
                    ContainerState::Unknown
                }
            }
        };
        let c = Container {
            id: spec.id.clone(),
            pod_sandbox_id: spec.sandbox_id.clone(),
            name: spec.config.name.clone(),
            attempt: spec.config.attempt,
            image: spec.config.image.clone(),
            image_ref: spec.image_id.clone(),
            state,
            created_at: spec.created_at,
            labels: spec.config.labels.clone(),
            annotations: spec.config.annotations.clone(),
        };
        (c, run.unwrap_or_default())
    }

    fn list_containers(&self, sandbox: Option<&str>) -> Result<Vec<Container>> {
        let mut alive = HashMap::new();
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.paths.containers())
            .map_err(internal)?
            .flatten()
        {
            let Ok(spec) = self.spec(&e.file_name().to_string_lossy()) else {
                continue;
            };
            if sandbox.is_some_and(|s| s != spec.sandbox_id) {
                continue;
            }
            out.push(self.container_entry(&spec, &mut alive).0);
        }
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let spec = self.spec(id)?;
        let (container, run) = self.container_entry(&spec, &mut HashMap::new());
        let mut message = run.message.clone();
        if container.state == ContainerState::Unknown {
            message =
                "the pod's supervisor (shim) is not running; the container's state is unknown"
                    .into();
        }
        Ok(ContainerStatus {
            pid: (container.state == ContainerState::Running && run.pid != 0).then_some(run.pid),
            container,
            started_at: run.started_at,
            finished_at: run.finished_at,
            exit_code: run.exit_code,
            reason: run.reason,
            message,
            log_path: spec.log_path.clone(),
        })
    }
}

fn take_fds(names: &[String], fds: Vec<OwnedFd>) -> HashMap<String, OwnedFd> {
    names.iter().cloned().zip(fds).collect()
}

fn reader(fd: Option<OwnedFd>) -> Result<Option<rkube_cri::Reader>> {
    fd.map(|f| exec::FdStream::new(f).map(|s| Box::pin(s) as rkube_cri::Reader))
        .transpose()
        .map_err(internal)
}

fn writer(fd: Option<OwnedFd>) -> Result<Option<rkube_cri::Writer>> {
    fd.map(|f| exec::FdStream::new(f).map(|s| Box::pin(s) as rkube_cri::Writer))
        .transpose()
        .map_err(internal)
}

fn resizer(pty: Option<OwnedFd>) -> Option<tokio::sync::mpsc::Sender<rkube_cri::TerminalSize>> {
    let pty = pty?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<rkube_cri::TerminalSize>(4);
    tokio::spawn(async move {
        while let Some(sz) = rx.recv().await {
            exec::resize(&pty, sz.width, sz.height);
        }
    });
    Some(tx)
}

#[async_trait::async_trait]
impl RuntimeService for EmbeddedRuntime {
    fn version(&self) -> String {
        format!("rkube://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let config = config.clone();
        self.blocking(move |i| i.run_pod_sandbox(&config)).await
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.stop_pod_sandbox(&id)).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.remove_pod_sandbox(&id)).await
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let id = id.to_string();
        self.blocking(move |i| i.pod_sandbox_status(&id)).await
    }

    async fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>> {
        self.blocking(|i| i.list_pod_sandbox()).await
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let (sid, config, sc) = (
            pod_sandbox_id.to_string(),
            config.clone(),
            sandbox_config.clone(),
        );
        self.blocking(move |i| i.create_container(&sid, &config, &sc))
            .await
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.start_container(&id)).await
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.stop_container(&id, timeout)).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| i.remove_container(&id)).await
    }

    async fn list_containers(&self, pod_sandbox_id: Option<&str>) -> Result<Vec<Container>> {
        let sid = pod_sandbox_id.map(str::to_string);
        self.blocking(move |i| i.list_containers(sid.as_deref()))
            .await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let id = id.to_string();
        self.blocking(move |i| i.container_status(&id)).await
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |i| {
            let spec = i.spec(&id)?;
            if !i.is_running(&id) {
                return Err(Error::Internal(format!(
                    "container {id} is not running: its log cannot be reopened"
                )));
            }
            i.call_ok(&spec.sandbox_id, &Request::ReopenLog { id: id.clone() })
                .map(|_| ())
        })
        .await
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        let opts = StreamOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let session = self.exec(id, cmd, &opts).await?;
        let work = async move {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let out = async {
                if let Some(mut r) = session.stdout {
                    let _ = r.read_to_end(&mut stdout).await;
                }
            };
            let err = async {
                if let Some(mut r) = session.stderr {
                    let _ = r.read_to_end(&mut stderr).await;
                }
            };
            tokio::join!(out, err);
            let exit_code = session.exit.await?;
            Ok::<_, Error>(ExecSyncResponse {
                stdout,
                stderr,
                exit_code,
            })
        };
        if timeout.is_zero() {
            return work.await;
        }
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            // Dropping the session closed the shim connection, which kills the process.
            Err(_) => Err(Error::Internal(format!(
                "command {cmd:?} timed out after {timeout:?}"
            ))),
        }
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        opts: &StreamOptions,
    ) -> Result<StreamingSession> {
        if cmd.is_empty() {
            return Err(Error::Container("exec needs a command".into()));
        }
        let (id, cmd, opts) = (id.to_string(), cmd.to_vec(), opts.clone());
        let (resp, fds, conn) = self
            .blocking(move |i| {
                let spec = i.spec(&id)?;
                if !i.is_running(&id) {
                    return Err(Error::Container(format!("container {id} is not running")));
                }
                let req = Request::Exec {
                    id: id.clone(),
                    args: cmd,
                    tty: opts.tty,
                    stdin: opts.stdin,
                    stdout: opts.stdout,
                    stderr: opts.stderr && !opts.tty,
                };
                match i.call_ok(&spec.sandbox_id, &req) {
                    Err(Error::Container(m)) => Err(Error::Container(format!(
                        "OCI runtime exec failed: exec failed: unable to start container process: {m}: unknown"
                    ))),
                    r => r,
                }
            })
            .await?;
        let mut fds = take_fds(&resp.fds, fds);
        let (stdin, stdout, resize) = match fds.remove("pty") {
            Some(pty) => {
                let out = if opts.stdout {
                    Some(pty.try_clone().map_err(internal)?)
                } else {
                    None
                };
                let inp = if opts.stdin {
                    Some(pty.try_clone().map_err(internal)?)
                } else {
                    None
                };
                (inp, out, resizer(Some(pty)))
            }
            None => (fds.remove("stdin"), fds.remove("stdout"), None),
        };
        let exit = Box::pin(async move {
            exec::recv_exit(conn)
                .await
                .map_err(|e| Error::Internal(format!("waiting for the exec'd process: {e}")))?
                .exit_code
                .ok_or_else(|| Error::Internal("the pod supervisor sent no exit code".into()))
        });
        Ok(StreamingSession {
            stdin: writer(stdin)?,
            stdout: reader(stdout)?,
            stderr: reader(fds.remove("stderr"))?,
            resize,
            exit,
        })
    }

    async fn attach(&self, id: &str, opts: &StreamOptions) -> Result<StreamingSession> {
        let (cid, o) = (id.to_string(), opts.clone());
        let (resp, fds, sandbox_id) = self
            .blocking(move |i| {
                let id = cid;
                let spec = i.spec(&id)?;
                if !i.is_running(&id) {
                    return Err(Error::Container(format!("container {id} is not running")));
                }
                let req = Request::Attach {
                    id: id.clone(),
                    stdin: o.stdin,
                    stdout: o.stdout,
                    stderr: o.stderr,
                };
                let (resp, fds, _) = i.call_ok(&spec.sandbox_id, &req)?;
                Ok((resp, fds, spec.sandbox_id))
            })
            .await?;
        let mut fds = take_fds(&resp.fds, fds);
        let inner = self.inner.clone();
        let cid = id.to_string();
        let exit = Box::pin(async move {
            let sock = inner.sock(&sandbox_id);
            let req = Request::Wait { id: cid.clone() };
            // The supervisor answers a wait only when the container exits: connect and ask
            // on a pool thread (quick), then await the answer without one, so a detached
            // attach drops this future, and with it the connection.
            let conn = tokio::task::spawn_blocking(move || {
                let s = protocol::connect(&sock)?;
                protocol::send(&s, &req, &[])?;
                Ok::<_, std::io::Error>(protocol::Conn::new(s))
            })
            .await
            .map_err(internal)?
            .map_err(|e| Error::Internal(format!("waiting for container {cid}: {e}")))?;
            let resp = exec::recv_exit(conn)
                .await
                .map_err(|e| Error::Internal(format!("waiting for container {cid}: {e}")))?;
            match (resp.exit_code, resp.error) {
                (Some(code), _) => Ok(code),
                (None, Some(e)) => Err(Error::Internal(e)),
                (None, None) => Err(Error::Internal(
                    "the pod supervisor sent no exit code".into(),
                )),
            }
        });
        Ok(StreamingSession {
            stdin: writer(fds.remove("stdin"))?,
            stdout: reader(fds.remove("stdout"))?,
            stderr: reader(fds.remove("stderr"))?,
            resize: resizer(fds.remove("pty")),
            exit,
        })
    }

    async fn port_forward(&self, pod_sandbox_id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let sid = pod_sandbox_id.to_string();
        let std_stream = self
            .blocking(move |i| {
                let rec = i.sandbox(&sid)?;
                let conn = if rec.config.namespace_options.network == NamespaceMode::Node {
                    std::net::TcpStream::connect(("127.0.0.1", port))
                } else {
                    netns::connect_loopback(&i.paths.sandbox(&sid).join("netns"), port)
                };
                conn.map_err(|e| {
                    Error::Internal(format!(
                        "port-forward to 127.0.0.1:{port} in pod sandbox {sid}: {e}"
                    ))
                })
            })
            .await?;
        std_stream.set_nonblocking(true).map_err(internal)?;
        tokio::net::TcpStream::from_std(std_stream).map_err(internal)
    }
}
