//! Shared fixtures of the runtime's tests and benchmark: a busybox image layer, a fake image
//! store, a runtime on a temp root, and a cleanup that checks nothing was left behind.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkube_cri::{
    ContainerConfig, ContainerState, ContainerStatus, Error, ImageConfig, ImageLookup,
    PodSandboxConfig, PodSandboxMetadata, ResolvedImage, Result, RuntimeService,
};
use rkube_runtime::{EmbeddedRuntime, LoopbackNetwork};

/// Applets the test image exposes as symlinks to /bin/busybox.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "hostname", "ps", "cat", "ls", "httpd", "dd", "true", "false", "id",
    "env", "mount", "wget", "head", "tr", "grep", "wc", "kill", "tty", "stty", "uname", "pwd",
    "touch", "rm", "mkdir", "test", "seq", "nc",
];

/// Builds a busybox rootfs layer in `dir` from Debian's busybox-static.
pub fn busybox_layer(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/install-test-deps.sh)"
    );
    let layer = dir.join("layer");
    for d in ["bin", "etc", "tmp", "www", "root"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy(busybox, layer.join("bin/busybox")).unwrap();
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(layer.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(layer.join("www/index.html"), "hello from httpd\n").unwrap();
    layer
}

/// An image store with one image (any reference but `missing…` resolves to it).
pub struct FakeImages {
    pub layer: PathBuf,
    pub config: ImageConfig,
}

impl ImageLookup for FakeImages {
    fn resolve(&self, image: &str) -> Result<ResolvedImage> {
        if image.starts_with("missing") {
            return Err(Error::NotFound(format!("image {image}")));
        }
        Ok(ResolvedImage {
            id: "sha256:busybox-test".into(),
            layers: vec![self.layer.clone()],
            config: self.config.clone(),
        })
    }
}

/// A runtime on a temp root with the busybox image.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub layer: PathBuf,
    pub runtime: EmbeddedRuntime,
    pub images: Arc<FakeImages>,
}

/// Parent of every test pod cgroup (removed by cleanup).
pub const CGROUP_PARENT: &str = "rkube-test";

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("rkrt")
            .tempdir_in("/tmp")
            .unwrap();
        let layer = busybox_layer(tmp.path());
        let root = tmp.path().join("agent/runtime");
        let images = Arc::new(FakeImages {
            layer: layer.clone(),
            config: ImageConfig {
                cmd: vec!["sh".into()],
                ..Default::default()
            },
        });
        let runtime =
            EmbeddedRuntime::new(root.clone(), images.clone(), Arc::new(LoopbackNetwork)).unwrap();
        Env {
            tmp,
            root,
            layer,
            runtime,
            images,
        }
    }

    /// A fresh runtime instance on the same root (an agent restart).
    pub fn reopen(&mut self) {
        self.runtime = EmbeddedRuntime::new(
            self.root.clone(),
            self.images.clone(),
            Arc::new(LoopbackNetwork),
        )
        .unwrap();
    }

    pub fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        let uid = format!("uid-{name}-{}", std::process::id());
        let mut labels = BTreeMap::new();
        labels.insert(rkube_cri::labels::POD_NAME.to_string(), name.to_string());
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "default".into(),
                attempt: 0,
            },
            hostname: name.into(),
            log_directory: self
                .tmp
                .path()
                .join("logs")
                .join(format!("default_{name}_{uid}")),
            cgroup_parent: format!("{CGROUP_PARENT}/pod{uid}"),
            labels,
            ..Default::default()
        }
    }

    pub async fn run_sandbox(&self, name: &str) -> (String, PodSandboxConfig) {
        let cfg = self.sandbox_config(name);
        let id = self.runtime.run_pod_sandbox(&cfg).await.unwrap();
        (id, cfg)
    }

    /// A sandbox `name` with one container `c` sleeping (for exec and stop tests); returns
    /// the sandbox and container ids.
    pub async fn run_sleeping(&self, name: &str) -> (String, String) {
        let (sid, scfg) = self.run_sandbox(name).await;
        let id = self.run(&sid, &scfg, "c", &["sleep", "1000"]).await;
        (sid, id)
    }

    /// A sandbox `name` with one container `c` running `cmd`, once that has exited (within
    /// `timeout`).
    pub async fn run_to_exit(
        &self,
        name: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> ContainerStatus {
        let (sid, scfg) = self.run_sandbox(name).await;
        let id = self.run(&sid, &scfg, "c", cmd).await;
        self.wait_exited(&id, timeout).await
    }

    /// Creates and starts a container running `cmd`.
    pub async fn run(
        &self,
        sid: &str,
        scfg: &PodSandboxConfig,
        name: &str,
        cmd: &[&str],
    ) -> String {
        let cfg = container_config(name, cmd);
        self.run_with(sid, scfg, cfg).await
    }

    pub async fn run_with(
        &self,
        sid: &str,
        scfg: &PodSandboxConfig,
        cfg: ContainerConfig,
    ) -> String {
        let id = self
            .runtime
            .create_container(sid, &cfg, scfg)
            .await
            .unwrap();
        self.runtime.start_container(&id).await.unwrap();
        id
    }

    /// Waits until the container has exited.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.runtime.container_status(id).await.unwrap();
            if st.container.state == ContainerState::Exited {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not exit within {timeout:?}: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes every sandbox and checks that nothing is left: no state, no mounts under the
    /// root, no cgroups, no shim.
    pub async fn cleanup(&self) {
        let mut shims = Vec::new();
        let mut cgroups = Vec::new();
        for s in self.runtime.list_pod_sandbox().await.unwrap_or_default() {
            if let Ok(Some(rec)) = read_record(&self.root, &s.id) {
                shims.push(rec.0);
                cgroups.push(rec.1);
            }
            self.runtime.remove_pod_sandbox(&s.id).await.unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(self.root.join("sandboxes"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "sandbox dirs left: {left:?}");
        let left: Vec<_> = std::fs::read_dir(self.root.join("containers"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "container dirs left: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let tmp = self.tmp.path().display().to_string();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&tmp)).collect();
        assert!(leaked.is_empty(), "mounts left: {leaked:?}");
        for cg in cgroups {
            for d in self.runtime.cgroup_dirs(&cg) {
                assert!(!d.exists(), "cgroup left: {}", d.display());
            }
        }
        for pid in shims {
            let alive = Path::new(&format!("/proc/{pid}")).exists()
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.windows(12).any(|w| w == b"__rkube-shim"))
                    .unwrap_or(false);
            assert!(!alive, "shim {pid} still running");
        }
        for d in self.runtime.cgroup_dirs(CGROUP_PARENT) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// (shim pid, pod cgroup) from a sandbox record.
fn read_record(root: &Path, id: &str) -> std::io::Result<Option<(u32, String)>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(
        root.join("sandboxes").join(id).join("sandbox.json"),
    )?)?;
    Ok(Some((
        v["shim_pid"].as_u64().unwrap_or(0) as u32,
        v["cgroup"].as_str().unwrap_or("").to_string(),
    )))
}

pub fn container_config(name: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        name: name.into(),
        image: "busybox".into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: PathBuf::from(format!("{name}/0.log")),
        ..Default::default()
    }
}

/// Contents of a CRI log minus the timestamps: `stdout F hello` lines.
pub fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        })
        .collect()
}
