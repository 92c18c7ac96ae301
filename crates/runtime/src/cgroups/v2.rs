//! cgroup v2: the unified hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
//! hybrid host).

use std::io;
use std::path::{Path, PathBuf};

use rkube_cri::LinuxResources;

use super::{Hierarchy, read_keyed, shares_to_weight, write_file};

/// The unified hierarchy and the wanted controllers enabled in it.
#[derive(Debug)]
pub(crate) struct V2 {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

impl V2 {
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

impl Hierarchy for V2 {
    fn mount(&self) -> &Path {
        &self.mount
    }

    fn create(&self, path: &str, res: &LinuxResources) -> io::Result<()> {
        // A controller is usable in a child only when every ancestor delegates it through
        // cgroup.subtree_control.
        let enable: Vec<String> = self
            .controllers
            .iter()
            .filter(|c| c.as_str() != "cpuacct")
            .map(|c| format!("+{c}"))
            .collect();
        let mut dir = self.mount.clone();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !enable.is_empty() {
                // Failing here (e.g. a parent with processes in it) leaves the limit unset
                // rather than failing the pod, as the kernel's "no internal processes" rule
                // is outside our control.
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), enable.join(" "));
            }
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir)?;
            }
        }
        if self.has("cpu") {
            if res.cpu_shares > 0 {
                write_file(
                    &dir,
                    "cpu.weight",
                    &shares_to_weight(res.cpu_shares).to_string(),
                )?;
            }
            if res.cpu_quota > 0 {
                let period = if res.cpu_period > 0 {
                    res.cpu_period
                } else {
                    100_000
                };
                write_file(&dir, "cpu.max", &format!("{} {period}", res.cpu_quota))?;
            }
        }
        if self.has("memory") && res.memory_limit_in_bytes > 0 {
            write_file(&dir, "memory.max", &res.memory_limit_in_bytes.to_string())?;
            // Without swap accounting a v2 container could still swap past its limit.
            let _ = std::fs::write(dir.join("memory.swap.max"), "0");
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
        read_keyed(&self.dir(path).join("memory.events"), "oom_kill")
    }
}
