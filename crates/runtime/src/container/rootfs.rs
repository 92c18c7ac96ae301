//! Building a container's filesystem inside its fresh mount namespace: the overlay rootfs,
//! /proc, /sys, /dev, the pod's /dev/shm and resolv.conf, the config's bind mounts, then
//! pivot_root. Runs in the container's child process before exec.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use crate::state::ContainerSpec;

/// Result of a setup step: the error text ends up in the container's start error.
pub(crate) type StepResult = Result<(), String>;

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

/// mount(2) with an error that names what was mounted where.
pub(crate) fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> StepResult {
    let src_c = src.map(cstr);
    let target_c = cstr(target);
    let fs_c = fstype.map(|f| CString::new(f).unwrap_or_default());
    let data_c = data.map(|d| CString::new(d).unwrap_or_default());
    // SAFETY: every pointer is a valid C string or null, as mount(2) expects.
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            target_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if rc != 0 {
        return Err(format!(
            "mount {} ({}) on {}: {}",
            src.map(|s| s.display().to_string())
                .unwrap_or_else(|| "none".into()),
            fstype.unwrap_or("bind"),
            target.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// `base` joined with an absolute in-container path, refusing `..` so a mount target can
/// never leave the rootfs through the path itself.
pub(crate) fn in_root(base: &Path, path: &str) -> Result<PathBuf, String> {
    let mut out = base.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path {path:?} must be absolute and must not contain \"..\""
                ));
            }
        }
    }
    Ok(out)
}

fn mkdir_p(p: &Path) -> StepResult {
    std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

fn touch(p: &Path) -> StepResult {
    if let Some(parent) = p.parent() {
        mkdir_p(parent)?;
    }
    if std::fs::symlink_metadata(p).is_err() {
        std::fs::File::create(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    Ok(())
}

fn bind(src: &Path, target: &Path, readonly: bool) -> StepResult {
    let is_dir = std::fs::metadata(src)
        .map_err(|e| format!("bind mount source {}: {e}", src.display()))?
        .is_dir();
    if is_dir {
        mkdir_p(target)?
    } else {
        touch(target)?
    }
    mount(Some(src), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if readonly {
        mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// Everything up to and including pivot_root. `sandbox_dir` holds the pod's shm and files.
pub(crate) fn setup(spec: &ContainerSpec, container_dir: &Path, sandbox_dir: &Path) -> StepResult {
    // Nothing mounted below must propagate back to the host (or from it).
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    if spec.layers.is_empty() {
        return Err(format!("image {} has no layers", spec.image_id));
    }
    let root = container_dir.join("rootfs");
    let lower: Vec<String> = spec
        .layers
        .iter()
        .rev()
        .map(|l| l.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        container_dir.join("upper").display(),
        container_dir.join("work").display()
    );
    mount(
        Some(Path::new("overlay")),
        &root,
        Some("overlay"),
        0,
        Some(&opts),
    )?;

    let nosuid_noexec_nodev = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    mkdir_p(&root.join("proc"))?;
    mount(
        Some(Path::new("proc")),
        &root.join("proc"),
        Some("proc"),
        nosuid_noexec_nodev,
        None,
    )?;
    mkdir_p(&root.join("sys"))?;
    let sys_flags = nosuid_noexec_nodev
        | if spec.config.security.privileged {
            0
        } else {
            libc::MS_RDONLY
        };
    mount(
        Some(Path::new("sysfs")),
        &root.join("sys"),
        Some("sysfs"),
        sys_flags,
        None,
    )?;
    setup_dev(&root, sandbox_dir)?;

    let resolv = sandbox_dir.join("resolv.conf");
    let overridden = |p: &str| spec.config.mounts.iter().any(|m| m.container_path == p);
    if resolv.exists() && !overridden("/etc/resolv.conf") {
        bind(&resolv, &root.join("etc/resolv.conf"), false)?;
    }
    let hostname = sandbox_dir.join("hostname");
    if hostname.exists() && !overridden("/etc/hostname") {
        bind(&hostname, &root.join("etc/hostname"), false)?;
    }
    for m in &spec.config.mounts {
        let target = in_root(&root, &m.container_path)?;
        bind(&m.host_path, &target, m.readonly)?;
    }

    // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the
    // container's mounts in this namespace (the host's, and other pods' netns bind mounts
    // and shm, are gone).
    std::env::set_current_dir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root {}: {e}", root.display()))?;
    // SAFETY: umount2 on a valid C string.
    if unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(format!(
            "detaching the old root: {}",
            std::io::Error::last_os_error()
        ));
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;

    if !spec.config.security.privileged {
        mask_paths()?;
    }
    if spec.config.security.readonly_rootfs {
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

fn setup_dev(root: &Path, sandbox_dir: &Path) -> StepResult {
    let dev = root.join("dev");
    mkdir_p(&dev)?;
    mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let path = dev.join(name);
        let c = cstr(&path);
        // SAFETY: mknod/chmod on a valid C string.
        let ok = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        } == 0
            && unsafe { libc::chmod(c.as_ptr(), 0o666) } == 0;
        if !ok {
            // Without CAP_MKNOD (nested runtimes) the host's node is bind-mounted instead.
            touch(&path)?;
            mount(
                Some(&Path::new("/dev").join(name)),
                &path,
                None,
                libc::MS_BIND,
                None,
            )?;
        }
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )?;
    let links = [
        ("pts/ptmx", "ptmx"),
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ];
    for (target, name) in links {
        symlink(target, dev.join(name)).map_err(|e| format!("symlink /dev/{name}: {e}"))?;
    }
    let shm = dev.join("shm");
    mkdir_p(&shm)?;
    let pod_shm = sandbox_dir.join("shm");
    if pod_shm.is_dir() {
        mount(
            Some(&pod_shm),
            &shm,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
    } else {
        mount(
            Some(Path::new("shm")),
            &shm,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
            Some("mode=1777,size=65536k"),
        )?;
    }
    let mq = dev.join("mqueue");
    mkdir_p(&mq)?;
    // mqueue needs the pod's IPC namespace; a host-IPC pod still gets one (harmless).
    let _ = mount(
        Some(Path::new("mqueue")),
        &mq,
        Some("mqueue"),
        libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV,
        None,
    );
    Ok(())
}

/// Hides kernel interfaces a container must not use, as runc's default masked and
/// read-only paths.
fn mask_paths() -> StepResult {
    let masked = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ];
    for p in masked {
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => mount(
                Some(Path::new("tmpfs")),
                path,
                Some("tmpfs"),
                libc::MS_RDONLY,
                None,
            )?,
            Ok(_) => mount(
                Some(Path::new("/dev/null")),
                path,
                None,
                libc::MS_BIND,
                None,
            )?,
            Err(_) => {}
        }
    }
    for p in [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ] {
        let path = Path::new(p);
        if path.exists() {
            mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None)?;
            mount(
                None,
                path,
                None,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                None,
            )?;
        }
    }
    Ok(())
}
