//! Container log rotation (upstream's `ContainerLogManager`): every 10 s, a running
//! container's log above the size limit is renamed to `<n>.log.<YYYYMMDD-hhmmss>` (UTC), the
//! runtime reopens its log file, and the oldest rotated files beyond the file limit go.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rkube_cri::{ContainerState, RuntimeService};

/// How often logs are checked (upstream's `logMonitorPeriod`).
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);

/// Limits of rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Rotate above this size (bytes).
    pub max_size: u64,
    /// Keep at most this many files per container, the live one included (at least 2).
    pub max_files: usize,
}

/// Rotated files of `log` (`<log>.<timestamp>`), oldest first.
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{base}.");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    // The timestamp suffix sorts chronologically.
    out.sort();
    out
}

/// Removes the oldest rotated files so that at most `keep` remain.
fn remove_excess(log: &Path, keep: usize) {
    let files = rotated_files(log);
    let excess = files.len().saturating_sub(keep);
    for f in &files[..excess] {
        let _ = std::fs::remove_file(f);
    }
}

/// Rotates one container's log if it is over the limit; returns whether it rotated.
pub async fn rotate_one(
    rt: &dyn RuntimeService,
    id: &str,
    log: &Path,
    limits: Limits,
    now: jiff::Timestamp,
) -> bool {
    let max_files = limits.max_files.max(2);
    // Leave room for the live file and the one about to be rotated.
    remove_excess(log, max_files - 1);
    let Ok(meta) = std::fs::metadata(log) else {
        return false;
    };
    if meta.len() < limits.max_size {
        return false;
    }
    remove_excess(log, max_files - 2);
    let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
    let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
    if rotated.exists() {
        // Rotated within this second already.
        return false;
    }
    if let Err(e) = std::fs::rename(log, &rotated) {
        tracing::warn!(log = %log.display(), error = %e, "rotating a container log failed");
        return false;
    }
    if let Err(e) = rt.reopen_container_log(id).await {
        tracing::warn!(container = %id, error = %e, "reopening a rotated log failed; undoing");
        let _ = std::fs::rename(&rotated, log);
        return false;
    }
    true
}

/// One pass over every running container.
pub async fn rotate_all(rt: &dyn RuntimeService, limits: Limits) {
    let Ok(containers) = rt.list_containers(None).await else {
        return;
    };
    for c in containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
    {
        let Ok(st) = rt.container_status(&c.id).await else {
            continue;
        };
        if st.log_path.as_os_str().is_empty() {
            continue;
        }
        rotate_one(rt, &c.id, &st.log_path, limits, jiff::Timestamp::now()).await;
    }
}

/// Rotates logs forever.
pub async fn run(rt: Arc<dyn RuntimeService>, limits: Limits) {
    loop {
        tokio::time::sleep(CHECK_PERIOD).await;
        rotate_all(rt.as_ref(), limits).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fake::FakeRuntime;
    use crate::pods::tests_support::TempDir;
    use rkube_cri::{ContainerConfig, PodSandboxConfig, RuntimeService};

    #[tokio::test]
    async fn rotates_and_keeps_at_most_max_files() {
        let dir = TempDir::new("logs");
        let rt = FakeRuntime::default();
        let sc = PodSandboxConfig {
            log_directory: dir.0.clone(),
            ..Default::default()
        };
        let sb = rt.run_pod_sandbox(&sc).await.unwrap();
        let cc = ContainerConfig {
            name: "web".into(),
            log_path: "web/0.log".into(),
            ..Default::default()
        };
        let id = rt.create_container(&sb, &cc, &sc).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let log = dir.0.join("web/0.log");
        let limits = Limits {
            max_size: 100,
            max_files: 3,
        };
        // Small: nothing happens.
        std::fs::write(&log, vec![b'x'; 50]).unwrap();
        rotate_all(&rt, limits).await;
        assert!(rotated_files(&log).is_empty());
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        for i in 0..4 {
            std::fs::write(&log, vec![b'x'; 200]).unwrap();
            let t = t0 + jiff::SignedDuration::from_secs(i);
            assert!(rotate_one(&rt, &id, &log, limits, t).await);
            // The fake runtime's reopen truncates/creates the live file.
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        let files = rotated_files(&log);
        assert_eq!(files.len(), 2, "{files:?}");
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["0.log.20231114-221322", "0.log.20231114-221323"]
        );
        assert!(
            rt.calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c == &format!("reopen {id}"))
        );
    }
}
