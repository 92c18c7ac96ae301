//! Linux capabilities: names, Docker/containerd's default set, and dropping the rest from
//! the bounding set in the container's process.

use rkube_cri::SecurityContext;

/// Capability names in kernel number order (`CAP_` prefix left off).
pub(crate) const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The default set of Docker and containerd's CRI plugin.
pub(crate) const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Highest capability number the kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
}

fn number(name: &str) -> Option<u32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    NAMES.iter().position(|c| *c == n).map(|p| p as u32)
}

/// The bounding set of a container: everything when privileged, else the default set with
/// the security context's additions and drops (`ALL` allowed in both).
pub(crate) fn resolve(sec: &SecurityContext) -> Result<Vec<u32>, String> {
    let all: Vec<u32> = (0..=last_cap()).collect();
    if sec.privileged {
        return Ok(all);
    }
    let mut set: Vec<u32> = DEFAULT.iter().filter_map(|n| number(n)).collect();
    let is_all = |n: &String| {
        n.trim().eq_ignore_ascii_case("ALL") || n.trim().eq_ignore_ascii_case("CAP_ALL")
    };
    if sec.drop_capabilities.iter().any(is_all) {
        set.clear();
    } else {
        for n in &sec.drop_capabilities {
            let c = number(n).ok_or_else(|| format!("unknown capability {n:?} in drop list"))?;
            set.retain(|x| *x != c);
        }
    }
    if sec.add_capabilities.iter().any(is_all) {
        return Ok(all);
    }
    for n in &sec.add_capabilities {
        let c = number(n).ok_or_else(|| format!("unknown capability {n:?} in add list"))?;
        if !set.contains(&c) {
            set.push(c);
        }
    }
    set.sort_unstable();
    Ok(set)
}

/// Drops every capability not in `keep` from the bounding set (needs CAP_SETPCAP, so it runs
/// before the process switches to its user). Root's capabilities after exec are its bounding
/// set; other users start with none, as with Docker.
pub(crate) fn drop_bounding(keep: &[u32]) -> std::io::Result<()> {
    for cap in 0..=last_cap() {
        if keep.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Sets the inheritable set to `keep`, as runc does, so that file capabilities of binaries
/// (e.g. ping's) work as in Docker.
pub(crate) fn set_inheritable(keep: &[u32]) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut inh = [0u32; 2];
        for &c in keep {
            if c < 64 {
                inh[(c / 32) as usize] |= 1 << (c % 32);
            }
        }
        for i in 0..2 {
            // Inheritable may only grow within permitted (we are root here: full permitted).
            data[i].inheritable = inh[i] & data[i].permitted;
        }
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_add_drop() {
        let sec = SecurityContext {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["CAP_CHOWN".into()],
            ..Default::default()
        };
        let set = resolve(&sec).unwrap();
        assert!(set.contains(&12));
        assert!(!set.contains(&0));
        assert!(set.contains(&5));
        let sec = SecurityContext {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        };
        assert!(resolve(&sec).unwrap().is_empty());
        let sec = SecurityContext {
            add_capabilities: vec!["BOGUS".into()],
            ..Default::default()
        };
        assert!(resolve(&sec).is_err());
    }
}
