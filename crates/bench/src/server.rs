//! An `rkube server` process on a fresh temporary data dir and a free loopback port, killed
//! (and its data dir removed) on drop.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::{Method, StatusCode};
use tokio::sync::mpsc;

use crate::client::Tls;

/// How long a server may take to become ready before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines of the server's stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// A running server.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    spawned: Instant,
    ready_rx: mpsc::UnboundedReceiver<Instant>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// When a server became ready, counted from the process spawn.
#[derive(Clone, Copy, Debug)]
pub struct Startup {
    /// First `200` from `GET /readyz`.
    pub readyz: Duration,
    /// The "ready:" line on stderr (bootstrap objects created, kubeconfig written).
    pub ready_line: Duration,
}

/// The release binary, `target/release/rkube` of this workspace (or `$RKUBE_BENCH_BIN`).
pub fn rkube_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("RKUBE_BENCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| workspace.join(t))
        .unwrap_or_else(|| workspace.join("target"));
    let bin = target.join("release/rkube");
    if !bin.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release --bin rkube`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Folder for the data dirs: `$RKUBE_BENCH_DIR`, else the system temp dir.
fn scratch_base() -> PathBuf {
    std::env::var_os("RKUBE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A TCP port free on loopback right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads the server's stderr on a thread: keeps the last lines and reports when the "ready:"
/// line arrives.
fn watch_stderr(
    stderr: ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("ready:") {
                let _ = tx.send(Instant::now());
            }
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    rx
}

impl Server {
    /// Spawns `rkube server` on a new data dir and free port, with `--datastore-endpoint
    /// etcd_endpoint` when given. Returns at once; see [`Server::wait_ready`].
    pub fn spawn(etcd_endpoint: Option<&str>) -> anyhow::Result<Server> {
        Server::spawn_with(etcd_endpoint, &[])
    }

    /// Like [`Server::spawn`], with more `rkube server` flags (e.g. `--disable-scheduler`).
    pub fn spawn_with(etcd_endpoint: Option<&str>, extra: &[&str]) -> anyhow::Result<Server> {
        let bin = rkube_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("rkube-bench-")
            .tempdir_in(scratch_base())?;
        let port = free_port()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--https-listen-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1", "--disable-agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ep) = etcd_endpoint {
            cmd.args(["--datastore-endpoint", ep]);
        }
        cmd.args(extra);
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let ready_rx = watch_stderr(stderr, tail.clone());
        Ok(Server {
            dir,
            port,
            child,
            spawned,
            ready_rx,
            tail,
        })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The HTTPS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fails, with the end of the server's stderr, if the process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
            let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
            bail!("rkube server exited ({status}):\n{}", lines.join("\n"));
        }
        Ok(())
    }

    /// One anonymous `GET /readyz`; true on `200`. Needs the CA the server writes at start.
    async fn readyz_ok(&self) -> bool {
        let Ok(ca) = std::fs::read(self.dir.path().join("server/tls/ca.crt")) else {
            return false;
        };
        let probe = async {
            let mut conn = Tls::anonymous(&ca, self.port)?.connect().await?;
            let (status, _) = conn.call(Method::GET, "/readyz", None).await?;
            anyhow::Ok(status == StatusCode::OK)
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), probe).await,
            Ok(Ok(true))
        )
    }

    /// Polls `/readyz` until it answers `200`, then waits for the "ready:" line; both
    /// measured from the spawn.
    pub async fn wait_ready(&mut self) -> anyhow::Result<Startup> {
        let readyz = loop {
            self.check_alive()?;
            if self.spawned.elapsed() > START_TIMEOUT {
                bail!("rkube server not ready after {START_TIMEOUT:?}");
            }
            if self.readyz_ok().await {
                break self.spawned.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let line_at = loop {
            self.check_alive()?;
            match tokio::time::timeout(Duration::from_millis(100), self.ready_rx.recv()).await {
                Ok(Some(at)) => break at,
                Ok(None) => {
                    // Stderr closes as the process exits: give it a moment, to report why.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.check_alive()?;
                    bail!("rkube server closed stderr before \"ready:\"")
                }
                Err(_) if self.spawned.elapsed() > START_TIMEOUT => {
                    bail!("no \"ready:\" line after {START_TIMEOUT:?}")
                }
                Err(_) => {}
            }
        };
        Ok(Startup {
            readyz,
            ready_line: line_at.duration_since(self.spawned),
        })
    }

    /// TLS settings for the admin, from the kubeconfig the server wrote.
    pub fn admin(&self) -> anyhow::Result<Tls> {
        Tls::admin(&self.dir.path().join("kubeconfig.yaml"), self.port)
    }

    /// Resident set size of the server process (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node agent (`rkube agent`) joined to a [`Server`], on its own data dir with the busybox
/// test image imported; its pods are stopped (`rkube killall`) and the process killed on drop.
pub struct Agent {
    dir: tempfile::TempDir,
    child: Child,
}

/// The image every node benchmark runs (built from Debian's busybox-static).
pub const BUSYBOX: &str = "busybox:1.36";

impl Agent {
    /// Starts `rkube agent` named `node` against `server`.
    pub fn spawn(server: &Server, node: &str) -> anyhow::Result<Agent> {
        let bin = rkube_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("rkube-bench-agent-")
            .tempdir_in(scratch_base())?;
        let images = dir.path().join("agent/images");
        std::fs::create_dir_all(&images)?;
        rkube_image::testing::busybox_oci_archive(&images.join("busybox.tar"), BUSYBOX)?;
        let token = std::fs::read_to_string(server.data_dir().join("node-token"))?;
        let child = Command::new(&bin)
            .args([
                "agent",
                "--server",
                &format!("https://127.0.0.1:{}", server.port()),
            ])
            .args(["--token", token.trim(), "--node-name", node])
            .arg("--kubeconfig")
            .arg(server.data_dir().join("kubeconfig.yaml"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--kubelet-port", &free_port()?.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} agent", bin.display()))?;
        Ok(Agent { dir, child })
    }

    /// Resident set size of the agent process, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id())
    }

    /// Summed RSS of the pod supervisors this agent started, in KiB.
    pub fn supervisors_rss_kib(&self) -> u64 {
        let root = self
            .dir
            .path()
            .join("agent/runtime")
            .to_string_lossy()
            .to_string();
        let mut total = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("__rkube-shim") && cmd.contains(&root) {
                total += rss_kib(pid).unwrap_or(0);
            }
        }
        total
    }
}

/// Another `rkube` process working against a [`Server`] through its admin kubeconfig: a
/// `rkube scheduler`, a `rkube controller-manager` or a simulated-nodes agent. Killed on drop.
pub struct Component {
    child: Child,
}

impl Component {
    /// `rkube scheduler` / `rkube controller-manager` (`what`) with the server's kubeconfig.
    pub fn control_plane(server: &Server, what: &str) -> anyhow::Result<Component> {
        let mut cmd = Command::new(rkube_binary()?);
        cmd.arg(what)
            .arg("--kubeconfig")
            .arg(server.data_dir().join("kubeconfig.yaml"));
        Component::spawn(cmd, what)
    }

    /// `rkube agent --simulate count --node-name prefix`: `prefix-0 … prefix-(count-1)`.
    pub fn simulated_nodes(
        server: &Server,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<Component> {
        let token = std::fs::read_to_string(server.data_dir().join("node-token"))?;
        let mut cmd = Command::new(rkube_binary()?);
        cmd.args([
            "agent",
            "--server",
            &format!("https://127.0.0.1:{}", server.port()),
        ])
        .args(["--token", token.trim(), "--node-name", prefix])
        .args(["--simulate", &count.to_string()])
        .arg("--kubeconfig")
        .arg(server.data_dir().join("kubeconfig.yaml"));
        Component::spawn(cmd, "agent --simulate")
    }

    fn spawn(mut cmd: Command, what: &str) -> anyhow::Result<Component> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting rkube {what}"))?;
        Ok(Component { child })
    }

    /// Resident set size, in KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id())
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.child.id())
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User plus system CPU time of a process, from `/proc/PID/stat` (fields 14 and 15, in clock
/// ticks of 1/100 s on Linux).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?)
    };
    // Field 14 (utime) is the 12th after the state field, which is first here.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(bin) = rkube_binary() {
            let _ = Command::new(bin)
                .arg("killall")
                .arg("--data-dir")
                .arg(self.dir.path())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether a Node object (JSON) has its Ready condition True.
pub fn node_ready(node: &serde_json::Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}
