//! What the node reports about its host: capacity (CPUs, memory, the data dir's filesystem),
//! allocatable (capacity less upstream's default hard eviction thresholds), `nodeInfo`, and the
//! live figures the heartbeat turns into pressure conditions.
//!
//! Everything is read from `/proc`, `/sys` and `statvfs`, as cAdvisor does for upstream's
//! kubelet; nothing here talks to the API.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::NodeSystemInfo;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The Kubernetes version this kubelet reports (`nodeInfo.kubeletVersion`): the version the
/// apiserver's `/version` reports as `gitVersion`, as k3s reports `v1.35.0+k3s1`.
pub const KUBELET_VERSION: &str = "v1.35.0+rkube";

/// Most pods per node (upstream's `--max-pods` default).
pub const MAX_PODS: u32 = 110;

/// Memory kept back from allocatable: upstream's default hard eviction threshold
/// `memory.available<100Mi`.
pub const EVICTION_MEMORY_BYTES: u64 = 100 << 20;

/// Fraction of the node filesystem kept back: upstream's `nodefs.available<10%`.
pub const EVICTION_NODEFS_PERCENT: u64 = 10;

/// Fraction of free inodes below which the node reports disk pressure: upstream's
/// `nodefs.inodesFree<5%`.
pub const EVICTION_NODEFS_INODES_PERCENT: u64 = 5;

/// The node architecture in Go's naming (`GOARCH`), from the build target.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// CPUs this process may run on: the affinity mask (a narrower cpuset shows here), else the
/// online CPUs.
pub fn cpu_count() -> u32 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its size.
    let from_affinity = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            Some(libc::CPU_COUNT(&set) as u32)
        } else {
            None
        }
    };
    from_affinity
        .filter(|n| *n > 0)
        .or_else(|| {
            std::fs::read_to_string("/sys/devices/system/cpu/online")
                .ok()
                .map(|s| count_cpu_list(s.trim()))
        })
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Counts a CPU list such as `0-3,8,10-11`.
fn count_cpu_list(s: &str) -> u32 {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(p.parse::<u32>().is_ok()),
        })
        .sum()
}

/// A field of `/proc/meminfo` in KiB (`MemTotal`, `MemAvailable`).
pub fn meminfo_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text, field)
}

fn parse_meminfo(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.trim().trim_end_matches("kB").trim().parse().ok())?
    })
}

/// The host's memory in bytes (`MemTotal`), read once; 0 when unreadable.
pub fn memory_capacity_bytes() -> i64 {
    static CAP: OnceLock<i64> = OnceLock::new();
    *CAP.get_or_init(|| meminfo_kib("MemTotal").map_or(0, |k| (k * 1024) as i64))
}

/// Sizes of a filesystem, from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    /// Size in bytes.
    pub capacity_bytes: u64,
    /// Bytes an unprivileged user may still write (`f_bavail`), as cAdvisor's "available".
    pub available_bytes: u64,
    /// Inodes in total.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// `statvfs` of the filesystem holding `path`.
pub fn fs_stats(path: &Path) -> io::Result<FsStats> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid C string; `st` is written by the call.
    let st = unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) != 0 {
            return Err(io::Error::last_os_error());
        }
        st
    };
    let frsize = st.f_frsize as u64;
    Ok(FsStats {
        capacity_bytes: st.f_blocks as u64 * frsize,
        available_bytes: st.f_bavail as u64 * frsize,
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// Processes (threads included) in use and the kernel's `pid_max`.
pub fn pid_usage() -> Option<(u64, u64)> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The fourth field of loadavg is `running/total` scheduling entities (threads).
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let total = loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    Some((total, max))
}

/// `bytes` as a binary-SI quantity the way upstream prints one: the largest of `Ki`, `Mi`, …
/// dividing it exactly, else plain bytes.
pub fn binary_quantity(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let (mut amount, mut exp) = (bytes, 0);
    while amount % 1024 == 0 && exp < SUFFIXES.len() {
        amount /= 1024;
        exp += 1;
    }
    if exp == 0 {
        bytes.to_string()
    } else {
        format!("{amount}{}", SUFFIXES[exp - 1])
    }
}

/// The host's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCapacity {
    /// CPUs.
    pub cpu: u32,
    /// Memory in bytes (`MemTotal`).
    pub memory_bytes: u64,
    /// Size of the data dir's filesystem in bytes.
    pub ephemeral_storage_bytes: u64,
    /// Most pods.
    pub pods: u32,
}

impl HostCapacity {
    /// Reads the host: CPUs, `MemTotal`, and the filesystem of `data_dir` (0 if unreadable).
    pub fn read(data_dir: &Path) -> HostCapacity {
        HostCapacity {
            cpu: cpu_count(),
            memory_bytes: meminfo_kib("MemTotal").unwrap_or(0) * 1024,
            ephemeral_storage_bytes: fs_stats(data_dir).map_or(0, |s| s.capacity_bytes),
            pods: MAX_PODS,
        }
    }

    /// `status.capacity`: cpu, memory (`24573156Ki`), ephemeral-storage, pods, and zero
    /// huge pages of both sizes.
    pub fn capacity(&self) -> BTreeMap<String, Quantity> {
        self.list(
            self.memory_bytes,
            binary_quantity(self.ephemeral_storage_bytes),
        )
    }

    /// `status.allocatable`: capacity less the default hard eviction thresholds (100Mi of
    /// memory, 10% of the node filesystem), as upstream computes it without reservations.
    pub fn allocatable(&self) -> BTreeMap<String, Quantity> {
        let storage = self.ephemeral_storage_bytes;
        let kept = storage * EVICTION_NODEFS_PERCENT / 100;
        self.list(
            self.memory_bytes.saturating_sub(EVICTION_MEMORY_BYTES),
            binary_quantity(storage - kept),
        )
    }

    fn list(&self, memory: u64, storage: String) -> BTreeMap<String, Quantity> {
        [
            ("cpu", self.cpu.to_string()),
            ("ephemeral-storage", storage),
            ("hugepages-1Gi", "0".to_string()),
            ("hugepages-2Mi", "0".to_string()),
            ("memory", binary_quantity(memory)),
            ("pods", self.pods.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v)))
        .collect()
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The kernel release (`uname -r`).
pub fn kernel_version() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return String::new();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// `PRETTY_NAME` of `/etc/os-release` (e.g. `Debian GNU/Linux 12 (bookworm)`).
pub fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    parse_os_release(&text).unwrap_or_else(|| "Linux".to_string())
}

fn parse_os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// `status.nodeInfo` of this host, with the container runtime's version string.
pub fn node_info(container_runtime_version: &str) -> NodeSystemInfo {
    NodeSystemInfo {
        architecture: architecture().to_string(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: container_runtime_version.to_string(),
        kernel_version: kernel_version(),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.to_string(),
        machine_id: read_trimmed("/etc/machine-id"),
        operating_system: "linux".to_string(),
        os_image: os_image(),
        swap: None,
        // Readable by root only; upstream leaves it empty otherwise too.
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_upstream() {
        assert_eq!(binary_quantity(24_573_156 * 1024), "24573156Ki");
        assert_eq!(binary_quantity(2 << 30), "2Gi");
        assert_eq!(binary_quantity(1000), "1000");
        assert_eq!(binary_quantity(93_478_772_582), "93478772582");
        assert_eq!(binary_quantity(0), "0");
    }

    #[test]
    fn capacity_and_allocatable() {
        let h = HostCapacity {
            cpu: 2,
            memory_bytes: 24_573_156 * 1024,
            ephemeral_storage_bytes: 100 << 30,
            pods: 110,
        };
        let c = h.capacity();
        assert_eq!(c["memory"].0, "24573156Ki");
        assert_eq!(c["cpu"].0, "2");
        assert_eq!(c["pods"].0, "110");
        assert_eq!(c["hugepages-2Mi"].0, "0");
        assert_eq!(c["ephemeral-storage"].0, "100Gi");
        let a = h.allocatable();
        assert_eq!(a["memory"].0, "24470756Ki");
        assert_eq!(a["ephemeral-storage"].0, "90Gi");
    }

    #[test]
    fn parsers() {
        assert_eq!(count_cpu_list("0-3,8,10-11"), 7);
        assert_eq!(count_cpu_list("0"), 1);
        let mi = "MemTotal:       24573156 kB\nMemFree:  100 kB\nMemAvailable:   2000 kB\n";
        assert_eq!(parse_meminfo(mi, "MemTotal"), Some(24_573_156));
        assert_eq!(parse_meminfo(mi, "MemAvailable"), Some(2000));
        assert_eq!(parse_meminfo(mi, "Nope"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn reads_this_host() {
        assert!(cpu_count() >= 1);
        assert!(memory_capacity_bytes() > 0);
        let fs = fs_stats(Path::new("/")).unwrap();
        assert!(fs.capacity_bytes > 0 && fs.available_bytes <= fs.capacity_bytes);
        let (used, max) = pid_usage().unwrap();
        assert!(used > 0 && max > used);
        let info = node_info("rkube://0.1.0");
        assert_eq!(info.operating_system, "linux");
        assert_eq!(info.architecture, "amd64");
        assert!(!info.kernel_version.is_empty());
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
    }
}
