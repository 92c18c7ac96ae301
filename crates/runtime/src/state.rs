//! What the runtime persists under its root so that a restarted agent (a new
//! `EmbeddedRuntime`) finds every sandbox and container again.
//!
//! Layout:
//! - `<root>/sandboxes/<id>/sandbox.json`: [`SandboxRecord`] (written by the runtime).
//! - `<root>/sandboxes/<id>/{shim.sock,shim.log,netns,shm/,resolv.conf,stopped}`.
//! - `<root>/containers/<id>/spec.json`: [`ContainerSpec`] (written by the runtime at create).
//! - `<root>/containers/<id>/state.json`: [`ContainerRun`] (written by the shim, the only
//!   process that knows when the container started and how it ended).
//! - `<root>/containers/<id>/{rootfs,upper,work}`: the overlay's mount point and rw layers.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rkube_cri::{ContainerConfig, PodSandboxConfig};
use serde::{Deserialize, Serialize};

/// The directories of one runtime root.
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Self {
        Paths {
            root: root.to_path_buf(),
        }
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.root.join("sandboxes")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
}

/// A sandbox as the runtime recorded it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: String,
    pub created_at: i64,
    pub config: PodSandboxConfig,
    /// Pod cgroup, relative to each hierarchy's root.
    pub cgroup: String,
    /// PID of the shim (0 before it started).
    pub shim_pid: u32,
    /// IPs the network plugin returned.
    pub ips: Vec<IpAddr>,
}

/// Everything the shim needs to start a container, computed by the runtime at create time
/// (image config merged with the container config), so the shim only does mechanics.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ContainerSpec {
    pub id: String,
    pub sandbox_id: String,
    pub created_at: i64,
    pub config: ContainerConfig,
    pub image_id: String,
    /// Image layers, lowest first.
    pub layers: Vec<PathBuf>,
    /// argv of the main process.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The image's USER (used when no run_as_user is set).
    pub image_user: String,
    /// Signal `stop_container` sends first.
    pub stop_signal: i32,
    /// Container cgroup, relative to each hierarchy's root.
    pub cgroup: String,
    /// Absolute path of the log file.
    pub log_path: PathBuf,
    /// Capabilities of the bounding set (numbers), already resolved from the default set and
    /// the security context's add/drop.
    pub capabilities: Vec<u32>,
}

/// How a container's process ran, as the shim recorded it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ContainerRun {
    /// Host PID of the main process.
    pub pid: u32,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A new random 64-hex-digit id, as containerd's.
pub(crate) fn new_id() -> std::io::Result<String> {
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes JSON atomically (temp file + rename), so a reader never sees half a record even
/// if the writer dies in the middle.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
