//! In-memory `RuntimeService` and `ImageService` for unit tests: containers "run" until the
//! test makes them exit (or exit at once when their command is `false`/`true`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rkube_cri::*;

#[derive(Clone, Debug)]
struct FakeSandbox {
    config: PodSandboxConfig,
    ready: bool,
    created_at: i64,
    ips: Vec<IpAddr>,
}

#[derive(Clone, Debug)]
struct FakeContainer {
    sandbox: String,
    config: ContainerConfig,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    log_path: std::path::PathBuf,
}

/// The fake runtime.
#[derive(Default)]
pub struct FakeRuntime {
    sandboxes: Mutex<BTreeMap<String, FakeSandbox>>,
    containers: Mutex<BTreeMap<String, FakeContainer>>,
    next: AtomicU64,
    /// exec commands (joined by space) → exit code; others exit 0.
    pub exec_results: Mutex<HashMap<String, i32>>,
    /// port → local address `port_forward` connects to.
    pub ports: Mutex<HashMap<u16, SocketAddr>>,
    /// Calls made, in order (`create web`, `start <id>`, `stop <id>`…).
    pub calls: Mutex<Vec<String>>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

impl FakeRuntime {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next.fetch_add(1, Ordering::SeqCst))
    }

    fn call(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }

    /// Makes the running container named `name` exit with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let mut cs = self.containers.lock().unwrap();
        for c in cs.values_mut() {
            if c.config.name == name && c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = code;
                c.finished_at = now();
            }
        }
    }

    /// Marks every sandbox not ready (as if its holder died).
    pub fn kill_sandboxes(&self) {
        for s in self.sandboxes.lock().unwrap().values_mut() {
            s.ready = false;
        }
    }

    /// (name, attempt, state) of every container, oldest first.
    pub fn containers(&self) -> Vec<(String, u32, ContainerState)> {
        let cs = self.containers.lock().unwrap();
        let mut v: Vec<_> = cs.values().collect();
        v.sort_by_key(|c| c.created_at);
        v.iter()
            .map(|c| (c.config.name.clone(), c.config.attempt, c.state))
            .collect()
    }

    /// Number of sandboxes (any state).
    pub fn sandbox_count(&self) -> usize {
        self.sandboxes.lock().unwrap().len()
    }

    /// The config a container was created with.
    pub fn container_config(&self, name: &str) -> Option<ContainerConfig> {
        let cs = self.containers.lock().unwrap();
        cs.values()
            .filter(|c| c.config.name == name)
            .max_by_key(|c| c.created_at)
            .map(|c| c.config.clone())
    }

    /// The config of the newest sandbox.
    pub fn sandbox_config(&self) -> Option<PodSandboxConfig> {
        let s = self.sandboxes.lock().unwrap();
        s.values()
            .max_by_key(|s| s.created_at)
            .map(|s| s.config.clone())
    }
}

#[async_trait::async_trait]
impl RuntimeService for FakeRuntime {
    fn version(&self) -> String {
        "rkube://0.1.0".into()
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let id = self.id("sb");
        self.call(format!("run_pod_sandbox {}", config.metadata.name));
        let n = self.sandboxes.lock().unwrap().len() as u8;
        self.sandboxes.lock().unwrap().insert(
            id.clone(),
            FakeSandbox {
                config: config.clone(),
                ready: true,
                created_at: now(),
                ips: vec![IpAddr::from([10, 42, 0, 10 + n])],
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.call(format!("stop_pod_sandbox {id}"));
        if let Some(s) = self.sandboxes.lock().unwrap().get_mut(id) {
            s.ready = false;
        }
        for c in self.containers.lock().unwrap().values_mut() {
            if c.sandbox == id && c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = 137;
                c.finished_at = now();
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.call(format!("remove_pod_sandbox {id}"));
        self.sandboxes.lock().unwrap().remove(id);
        self.containers
            .lock()
            .unwrap()
            .retain(|_, c| c.sandbox != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let s = self.sandboxes.lock().unwrap();
        let sb = s
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("sandbox {id}")))?;
        Ok(PodSandboxStatus {
            sandbox: PodSandbox {
                id: id.into(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready {
                    PodSandboxState::Ready
                } else {
                    PodSandboxState::NotReady
                },
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            },
            ips: if sb.ready { sb.ips.clone() } else { vec![] },
            netns_path: None,
        })
    }

    async fn list_pod_sandbox(&self) -> Result<Vec<PodSandbox>> {
        let s = self.sandboxes.lock().unwrap();
        Ok(s.iter()
            .map(|(id, sb)| PodSandbox {
                id: id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready {
                    PodSandboxState::Ready
                } else {
                    PodSandboxState::NotReady
                },
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
        sc: &PodSandboxConfig,
    ) -> Result<String> {
        if !self.sandboxes.lock().unwrap().contains_key(sandbox) {
            return Err(Error::NotFound(format!("sandbox {sandbox}")));
        }
        let id = self.id("c");
        self.call(format!("create {} {}", config.name, config.attempt));
        let log_path = sc.log_directory.join(&config.log_path);
        if let Some(dir) = log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(&log_path, b"");
        // Distinct creation times even within one clock tick.
        let created_at = now() + self.next.load(Ordering::SeqCst) as i64;
        self.containers.lock().unwrap().insert(
            id.clone(),
            FakeContainer {
                sandbox: sandbox.into(),
                config: config.clone(),
                state: ContainerState::Created,
                created_at,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                log_path,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.call(format!("start {id}"));
        let mut cs = self.containers.lock().unwrap();
        let c = cs
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        c.started_at = now();
        c.state = ContainerState::Running;
        match c.config.command.first().map(String::as_str) {
            Some("false") => {
                c.state = ContainerState::Exited;
                c.exit_code = 1;
                c.finished_at = now();
            }
            Some("true") => {
                c.state = ContainerState::Exited;
                c.finished_at = now();
            }
            _ => {}
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        self.call(format!("stop {id}"));
        let mut cs = self.containers.lock().unwrap();
        if let Some(c) = cs.get_mut(id)
            && c.state == ContainerState::Running
        {
            c.state = ContainerState::Exited;
            c.exit_code = 137;
            c.finished_at = now();
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.call(format!("remove {id}"));
        self.containers.lock().unwrap().remove(id);
        Ok(())
    }

    async fn list_containers(&self, sandbox: Option<&str>) -> Result<Vec<Container>> {
        let cs = self.containers.lock().unwrap();
        Ok(cs
            .iter()
            .filter(|(_, c)| sandbox.is_none_or(|s| s == c.sandbox))
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox.clone(),
                name: c.config.name.clone(),
                attempt: c.config.attempt,
                image: c.config.image.clone(),
                image_ref: format!("sha256:{}", c.config.image),
                state: c.state,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let c = {
            let cs = self.containers.lock().unwrap();
            cs.get(id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("container {id}")))?
        };
        let list = self.list_containers(Some(&c.sandbox)).await?;
        let container = list
            .into_iter()
            .find(|x| x.id == id)
            .ok_or_else(|| Error::NotFound(id.into()))?;
        Ok(ContainerStatus {
            container,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            reason: String::new(),
            message: String::new(),
            log_path: c.log_path.clone(),
            pid: None,
        })
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.call(format!("reopen {id}"));
        let cs = self.containers.lock().unwrap();
        if let Some(c) = cs.get(id) {
            let _ = std::fs::write(&c.log_path, b"");
        }
        Ok(())
    }

    async fn exec_sync(&self, _id: &str, cmd: &[String], _t: Duration) -> Result<ExecSyncResponse> {
        let code = self
            .exec_results
            .lock()
            .unwrap()
            .get(&cmd.join(" "))
            .copied()
            .unwrap_or(0);
        Ok(ExecSyncResponse {
            stdout: if code == 0 {
                vec![]
            } else {
                b"unhealthy\n".to_vec()
            },
            stderr: vec![],
            exit_code: code,
        })
    }

    async fn exec(
        &self,
        _id: &str,
        _cmd: &[String],
        _o: &StreamOptions,
    ) -> Result<StreamingSession> {
        Err(Error::Internal("fake runtime: no streaming".into()))
    }

    async fn attach(&self, _id: &str, _o: &StreamOptions) -> Result<StreamingSession> {
        Err(Error::Internal("fake runtime: no streaming".into()))
    }

    async fn port_forward(&self, _sb: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let addr = self.ports.lock().unwrap().get(&port).copied();
        match addr {
            Some(a) => Ok(tokio::net::TcpStream::connect(a).await?),
            None => Err(Error::Internal("connect: connection refused".into())),
        }
    }
}

/// The fake image service: pulls succeed unless the image name contains `bad`.
#[derive(Default)]
pub struct FakeImages {
    /// Present images.
    pub present: Mutex<HashSet<String>>,
    /// Pull count.
    pub pulls: AtomicU64,
}

#[async_trait::async_trait]
impl ImageService for FakeImages {
    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(vec![])
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let p = self.present.lock().unwrap();
        let name = image.trim_start_matches("sha256:");
        Ok(p.contains(name).then(|| Image {
            id: format!("sha256:{name}"),
            repo_tags: vec![name.into()],
            repo_digests: vec![format!("docker.io/library/{name}@sha256:feed")],
            size: 1234,
        }))
    }

    async fn pull_image(
        &self,
        image: &str,
        _a: &[AuthConfig],
        _p: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<String> {
        self.pulls.fetch_add(1, Ordering::SeqCst);
        if image.contains("bad") {
            return Err(Error::ImagePull(format!(
                "failed to resolve reference \"{image}\": not found"
            )));
        }
        self.present.lock().unwrap().insert(image.into());
        Ok(format!("sha256:{image}"))
    }

    async fn remove_image(&self, _image: &str) -> Result<()> {
        Ok(())
    }
}
