//! cgroup v1: one hierarchy per controller mount (`/sys/fs/cgroup/<controller>`).

use std::io;
use std::path::{Path, PathBuf};

use rkube_cri::LinuxResources;

use super::{Hierarchy, read_keyed, write_file};

/// A v1 hierarchy and the wanted controllers bound to it.
#[derive(Debug)]
pub(crate) struct V1 {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

impl V1 {
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

impl Hierarchy for V1 {
    fn mount(&self) -> &Path {
        &self.mount
    }

    fn create(&self, path: &str, res: &LinuxResources) -> io::Result<()> {
        let dir = self.dir(path);
        std::fs::create_dir_all(&dir)?;
        if self.has("cpu") {
            if res.cpu_shares > 0 {
                write_file(&dir, "cpu.shares", &res.cpu_shares.to_string())?;
            }
            if res.cpu_quota > 0 {
                let period = if res.cpu_period > 0 {
                    res.cpu_period
                } else {
                    100_000
                };
                write_file(&dir, "cpu.cfs_period_us", &period.to_string())?;
                write_file(&dir, "cpu.cfs_quota_us", &res.cpu_quota.to_string())?;
            }
        }
        if self.has("memory") && res.memory_limit_in_bytes > 0 {
            write_file(
                &dir,
                "memory.limit_in_bytes",
                &res.memory_limit_in_bytes.to_string(),
            )?;
        }
        if self.has("pids") && res.pids_limit > 0 {
            write_file(&dir, "pids.max", &res.pids_limit.to_string())?;
        }
        Ok(())
    }

    fn oom_kills(&self, path: &str) -> Option<u64> {
        if !self.has("memory") {
            return None;
        }
        // `oom_kill` exists since Linux 4.13; older kernels only have the failure counter,
        // which counts limit hits rather than kills, so it is only a fallback.
        let dir = self.dir(path);
        read_keyed(&dir.join("memory.oom_control"), "oom_kill").or_else(|| {
            std::fs::read_to_string(dir.join("memory.failcnt"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
    }
}
