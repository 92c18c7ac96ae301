//! The few mount operations volumes need: tmpfs for memory-backed volumes, and finding and
//! unmounting everything below a pod's directory at teardown.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of this process's mount namespace, from `/proc/self/mountinfo`.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .collect()
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    // mountinfo shows resolved paths.
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mount_points().is_ok_and(|m| m.contains(&path))
}

/// Mounts a tmpfs on `path` (mode 0777, `size` bytes when given), unless one is there already.
pub fn mount_tmpfs(path: &Path, size: Option<u64>) -> io::Result<()> {
    if is_mount_point(path) {
        return Ok(());
    }
    let mut opts = "mode=0777".to_string();
    if let Some(s) = size.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={s}"));
    }
    let path = std::fs::canonicalize(path)?;
    let target = cstr(&path)?;
    let data = CString::new(opts).expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts every mount at or below `dir`, deepest first (lazily, so a process still holding
/// one does not block teardown). Fails if some mount remains, so the caller never deletes
/// through a mount into its filesystem.
pub fn unmount_under(dir: &Path) -> io::Result<()> {
    unmount(dir, true)
}

/// Unmounts every mount strictly below `dir`, leaving `dir` itself mounted (`rkube killall` on
/// a data dir that may be a filesystem of its own). Otherwise as [`unmount_under`].
pub fn unmount_below(dir: &Path) -> io::Result<()> {
    unmount(dir, false)
}

/// The one implementation behind [`unmount_under`] and [`unmount_below`]: tries every mount,
/// then reports the first failure, or a mount that is still there.
fn unmount(dir: &Path, including_dir: bool) -> io::Result<()> {
    let resolved = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = resolved.as_path();
    let under = |p: &PathBuf| p.starts_with(dir) && (including_dir || p != dir);
    let mut points: Vec<PathBuf> = mount_points()?.into_iter().filter(under).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut first_error = None;
    for p in &points {
        let c = cstr(p)?;
        // SAFETY: `c` is a valid C string.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            // EINVAL/ENOENT: already gone with a parent that was detached first.
            if e.raw_os_error() != Some(libc::EINVAL)
                && e.raw_os_error() != Some(libc::ENOENT)
                && first_error.is_none()
            {
                first_error = Some(io::Error::new(
                    e.kind(),
                    format!("unmount {}: {e}", p.display()),
                ));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(left) = mount_points()?.into_iter().find(under) {
        return Err(io::Error::other(format!(
            "{} is still mounted",
            left.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    40 22 0:40 / /var/lib/x\\040y rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mountinfo(text),
            vec![PathBuf::from("/"), PathBuf::from("/var/lib/x y")]
        );
    }

    #[test]
    fn tmpfs_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("vol");
        std::fs::create_dir(&m).unwrap();
        mount_tmpfs(&m, Some(1 << 20)).expect("mounting tmpfs (tests run as root)");
        assert!(is_mount_point(&m));
        mount_tmpfs(&m, Some(1 << 20)).unwrap(); // idempotent
        let stats = crate::hostinfo::fs_stats(&m).unwrap();
        assert_eq!(stats.capacity_bytes, 1 << 20);
        unmount_under(d.path()).unwrap();
        assert!(!is_mount_point(&m));
    }

    #[test]
    fn unmount_below_keeps_the_dir_itself() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        let inner = top.join("inner");
        std::fs::create_dir(&top).unwrap();
        mount_tmpfs(&top, None).expect("mounting tmpfs (tests run as root)");
        // Unmounts `top` even if an assertion below fails.
        struct Cleanup<'a>(&'a Path);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = unmount_under(self.0);
            }
        }
        let _cleanup = Cleanup(d.path());
        std::fs::create_dir(&inner).unwrap();
        mount_tmpfs(&inner, None).unwrap();
        unmount_below(&top).unwrap();
        assert!(!is_mount_point(&inner));
        assert!(is_mount_point(&top));
        unmount_below(&top).unwrap(); // nothing left below: fine
        unmount_under(&top).unwrap();
        assert!(!is_mount_point(&top));
    }
}
