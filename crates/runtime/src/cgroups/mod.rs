//! Pod and container cgroups on v1, v2 or a hybrid of both.
//!
//! Each mounted hierarchy that carries a controller rkube uses (cpu, cpuacct, memory, pids)
//! is one [`Hierarchy`]; a cgroup path like `kubepods/burstable/pod<uid>/<container>` exists
//! once in each. On a hybrid host a controller is used on v2 only when it is enabled there
//! (not bound to a v1 hierarchy), as upstream's libcgroups decides.

mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rkube_cri::LinuxResources;

/// Controllers whose limits rkube sets or whose accounting it reads.
const WANTED: &[&str] = &["cpu", "cpuacct", "memory", "pids"];

/// One mounted cgroup hierarchy (a v1 controller mount or the v2 unified tree).
pub(crate) trait Hierarchy: Send + Sync + std::fmt::Debug {
    /// Mount point of the hierarchy.
    fn mount(&self) -> &Path;
    /// Creates `path` (and its parents) and applies the limits this hierarchy's controllers
    /// know about.
    fn create(&self, path: &str, res: &LinuxResources) -> io::Result<()>;
    /// OOM kills recorded in `path`, if this hierarchy carries the memory controller.
    fn oom_kills(&self, path: &str) -> Option<u64>;

    /// Directory of `path` in this hierarchy.
    fn dir(&self, path: &str) -> PathBuf {
        self.mount().join(path.trim_start_matches('/'))
    }
    /// Moves the calling process into `path`.
    fn join_self(&self, path: &str) -> io::Result<()> {
        std::fs::write(self.dir(path).join("cgroup.procs"), "0")
    }
    /// PIDs in `path` and below.
    fn procs(&self, path: &str) -> Vec<i32> {
        let mut out = Vec::new();
        collect_procs(&self.dir(path), &mut out);
        out
    }
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&e.path(), out);
            }
        }
    }
}

/// Removes a cgroup directory tree, deepest first (cgroup dirs are removed with rmdir; their
/// control files go with them).
fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// All hierarchies rkube places pods and containers in.
#[derive(Debug)]
pub(crate) struct Cgroups {
    hierarchies: Vec<Box<dyn Hierarchy>>,
}

impl Cgroups {
    /// Detects the host's layout from `/proc/self/mountinfo`.
    pub fn detect() -> io::Result<Cgroups> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut hierarchies: Vec<Box<dyn Hierarchy>> = Vec::new();
        let mut v1_bound: Vec<String> = Vec::new();
        let mut v2_mount: Option<PathBuf> = None;
        for line in info.lines() {
            // `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            let mount = PathBuf::from(unescape(pre[4]));
            match post[0] {
                "cgroup" => {
                    let ctrls: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| WANTED.contains(o))
                        .map(str::to_string)
                        .collect();
                    if ctrls.is_empty() || ctrls.iter().any(|c| v1_bound.contains(c)) {
                        continue;
                    }
                    v1_bound.extend(ctrls.iter().cloned());
                    hierarchies.push(Box::new(v1::V1 {
                        mount,
                        controllers: ctrls,
                    }));
                }
                "cgroup2" if v2_mount.is_none() => v2_mount = Some(mount),
                _ => {}
            }
        }
        if let Some(mount) = v2_mount {
            let available =
                std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
            let ctrls: Vec<String> = available
                .split_whitespace()
                .filter(|c| WANTED.contains(c) && !v1_bound.iter().any(|b| b == c))
                .map(str::to_string)
                .collect();
            // A pure v2 host uses the unified tree even with no controller enabled (processes
            // still need a place, and memory.events needs the memory controller anyway).
            if !ctrls.is_empty() || hierarchies.is_empty() {
                hierarchies.push(Box::new(v2::V2 {
                    mount,
                    controllers: ctrls,
                }));
            }
        }
        if hierarchies.is_empty() {
            return Err(io::Error::other(
                "no cgroup hierarchy is mounted (looked for cgroup v1 cpu/memory/pids mounts and \
                 cgroup2 in /proc/self/mountinfo); mount /sys/fs/cgroup, or, when starting the \
                 agent in a network namespace, use `nsenter --net=/run/netns/NAME` rather than \
                 `ip netns exec`, which remounts /sys and hides the cgroup mounts",
            ));
        }
        Ok(Cgroups { hierarchies })
    }

    /// Creates `path` in every hierarchy with the given limits.
    pub fn create(&self, path: &str, res: &LinuxResources) -> io::Result<()> {
        for h in &self.hierarchies {
            h.create(path, res).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("creating cgroup {}: {e}", h.dir(path).display()),
                )
            })?;
        }
        Ok(())
    }

    /// Moves the calling process into `path` in every hierarchy.
    pub fn join_self(&self, path: &str) -> io::Result<()> {
        for h in &self.hierarchies {
            h.join_self(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("joining cgroup {}: {e}", h.dir(path).display()),
                )
            })?;
        }
        Ok(())
    }

    /// OOM kills recorded for `path` (0 when no hierarchy carries memory).
    pub fn oom_kills(&self, path: &str) -> u64 {
        self.hierarchies
            .iter()
            .filter_map(|h| h.oom_kills(path))
            .sum()
    }

    /// Every PID in `path` and its children, over all hierarchies.
    pub fn procs(&self, path: &str) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .hierarchies
            .iter()
            .flat_map(|h| h.procs(path))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in `path` until it is empty (or `wait` passes).
    pub fn kill_all(&self, path: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let pids = self.procs(path);
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills what is left in `path` and removes it from every hierarchy.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        if path.trim_matches('/').is_empty() {
            return Ok(());
        }
        self.kill_all(path, Duration::from_secs(5));
        let mut last = Ok(());
        for h in &self.hierarchies {
            // rmdir can briefly fail with EBUSY while the kernel finishes exiting tasks.
            let dir = h.dir(path);
            for attempt in 0..50 {
                match remove_tree(&dir) {
                    Ok(()) => break,
                    Err(e) if attempt == 49 => {
                        last = Err(io::Error::new(
                            e.kind(),
                            format!("removing cgroup {}: {e}", dir.display()),
                        ))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        last
    }

    /// Directories of `path` (one per hierarchy), for tests and diagnostics.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.dir(path)).collect()
    }
}

/// mountinfo escapes spaces and friends as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a control file, naming it in the error.
fn write_file(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", dir.join(file).display()),
        )
    })
}

/// Reads `key value` lines (memory.events, memory.oom_control) and returns `key`'s value.
fn read_keyed(file: &Path, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(file).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// cgroup v2 `cpu.weight` from v1 `cpu.shares`, as upstream converts it.
pub(crate) fn shares_to_weight(shares: i64) -> u64 {
    let shares = shares.clamp(2, 262144) as u64;
    1 + ((shares - 2) * 9999) / 262142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion_matches_upstream() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }
}
