//! What the runtime holds for one pod (upstream's `kubecontainer.PodStatus`): its sandboxes
//! and containers, newest first, read through the CRI traits by the pod UID label.

use std::net::IpAddr;
use std::path::PathBuf;

use rkube_cri::{ContainerState, PodSandboxState, RuntimeService, labels};

/// One sandbox of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxInfo {
    /// Runtime id.
    pub id: String,
    /// Sandbox attempt (0 for the first).
    pub attempt: u32,
    /// Whether its namespaces are held.
    pub ready: bool,
    /// Creation time (ns).
    pub created_at: i64,
    /// The pod's IPs.
    pub ips: Vec<IpAddr>,
}

/// One container of a pod, with its detailed status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Runtime id.
    pub id: String,
    /// Sandbox it belongs to.
    pub sandbox_id: String,
    /// Container name in the pod.
    pub name: String,
    /// Restart number.
    pub attempt: u32,
    /// State.
    pub state: ContainerState,
    /// Creation time (ns).
    pub created_at: i64,
    /// Start time (ns, 0 if never started).
    pub started_at: i64,
    /// Exit time (ns, 0 if not exited).
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`…
    pub reason: String,
    /// Detail.
    pub message: String,
    /// Image as requested.
    pub image: String,
    /// Image id.
    pub image_ref: String,
    /// Absolute log path.
    pub log_path: PathBuf,
}

impl ContainerInfo {
    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.state == ContainerState::Running
    }

    /// Whether it ran (or failed to start) and is over: exited, or created but never started.
    pub fn finished(&self) -> bool {
        matches!(self.state, ContainerState::Exited | ContainerState::Unknown)
    }
}

/// Sandboxes and containers of one pod, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRuntime {
    /// Sandboxes, newest first.
    pub sandboxes: Vec<SandboxInfo>,
    /// Containers of all its sandboxes, newest first.
    pub containers: Vec<ContainerInfo>,
}

impl PodRuntime {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxInfo> {
        self.sandboxes.first()
    }

    /// The newest container named `name` in sandbox `sandbox_id` (any sandbox when `None`).
    pub fn latest(&self, name: &str, sandbox_id: Option<&str>) -> Option<&ContainerInfo> {
        self.containers
            .iter()
            .find(|c| c.name == name && sandbox_id.is_none_or(|s| c.sandbox_id == s))
    }

    /// The container before the newest one named `name` (upstream's `lastState` source).
    pub fn previous(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// Whether any container of the pod runs.
    pub fn any_running(&self) -> bool {
        self.containers.iter().any(|c| c.running())
    }
}

/// Reads what the runtime holds for pod `uid`.
pub async fn read_pod_runtime(rt: &dyn RuntimeService, uid: &str) -> rkube_cri::Result<PodRuntime> {
    let mut out = PodRuntime::default();
    let mut sandboxes: Vec<_> = rt
        .list_pod_sandbox()
        .await?
        .into_iter()
        .filter(|s| {
            s.metadata.uid == uid || s.labels.get(labels::POD_UID).is_some_and(|u| u == uid)
        })
        .collect();
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    for sb in sandboxes {
        let ready = sb.state == PodSandboxState::Ready;
        let ips = if ready {
            rt.pod_sandbox_status(&sb.id)
                .await
                .map(|s| s.ips)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for c in rt.list_containers(Some(&sb.id)).await? {
            let st = match rt.container_status(&c.id).await {
                Ok(st) => st,
                // Removed between list and status: skip it.
                Err(rkube_cri::Error::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            let name = c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            out.containers.push(ContainerInfo {
                id: c.id,
                sandbox_id: c.pod_sandbox_id,
                name,
                attempt: c.attempt,
                state: c.state,
                created_at: c.created_at,
                started_at: st.started_at,
                finished_at: st.finished_at,
                exit_code: st.exit_code,
                reason: st.reason,
                message: st.message,
                image: c.image,
                image_ref: c.image_ref,
                log_path: st.log_path,
            });
        }
        out.sandboxes.push(SandboxInfo {
            id: sb.id,
            attempt: sb.metadata.attempt,
            ready,
            created_at: sb.created_at,
            ips,
        });
    }
    out.containers.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(b.attempt.cmp(&a.attempt))
    });
    Ok(out)
}
