//! Upstream's atomic writer: the files of a configMap, secret, downwardAPI or projected volume
//! are written into a fresh timestamped directory, then one `rename` swaps the `..data` symlink
//! to it, so a reader sees either the old set of files or the new one, never a mix. The names a
//! container sees are symlinks through `..data`:
//!
//! ```text
//! <volume>/..2026_11_22_04_05_06.123456789/key   the files
//! <volume>/..data -> ..2026_11_22_04_05_06.123456789
//! <volume>/key -> ..data/key
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// The symlink naming the current data directory.
pub const DATA_DIR_NAME: &str = "..data";
/// The symlink built before the swap.
const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// Contents.
    pub data: Vec<u8>,
    /// Permission bits (e.g. `0o644`).
    pub mode: u32,
}

/// Files by path relative to the volume root (`dir/key`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as upstream's `validatePath`: relative, no `..` element, not
/// starting with `..`.
pub fn validate_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if p.len() > 4096 {
        return Err(format!(
            "invalid path: must be less than or equal to 4096 characters: {p:?}"
        ));
    }
    if Path::new(p).is_absolute() {
        return Err(format!("invalid path: must be relative path: {p}"));
    }
    if Path::new(p).components().any(|c| c == Component::ParentDir) {
        return Err(format!("invalid path: must not contain '..': {p}"));
    }
    if p.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {p}"));
    }
    Ok(())
}

fn first_component(p: &str) -> &str {
    p.split('/')
        .find(|s| !s.is_empty() && *s != ".")
        .unwrap_or(p)
}

/// Reads the payload currently behind `..data` (for comparison), `None` when there is none.
fn read_current(dir: &Path, paths: &BTreeSet<&str>) -> Option<Payload> {
    let data = dir.join(DATA_DIR_NAME);
    std::fs::read_link(&data).ok()?;
    let mut out = Payload::new();
    // Walk the current data dir so removed files count as a change too.
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(data.join(&rel)).ok()? {
            let entry = entry.ok()?;
            let r = rel.join(entry.file_name());
            let ft = entry.file_type().ok()?;
            if ft.is_dir() {
                stack.push(r);
            } else {
                let meta = entry.metadata().ok()?;
                let key = r.to_string_lossy().into_owned();
                if !paths.contains(key.as_str()) {
                    return None; // a file that should go: treat as changed
                }
                out.insert(
                    key,
                    FileProjection {
                        data: std::fs::read(entry.path()).ok()?,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Some(out)
}

fn timestamped_dir(dir: &Path) -> io::Result<PathBuf> {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("..%Y_%m_%d_%H_%M_%S.").to_string();
    for attempt in 0..100u32 {
        let nanos = now.subsec_nanosecond() as u32;
        let name = format!("{stamp}{}", nanos.wrapping_add(attempt.wrapping_mul(7919)));
        let p = dir.join(&name);
        match std::fs::create_dir(&p) {
            Ok(()) => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                return Ok(p);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a unique data directory"))
}

/// Writes `payload` into the volume directory `dir` atomically (see the module docs). Returns
/// whether anything changed; an unchanged payload writes nothing. `gid`, when given (the pod's
/// `fsGroup`), owns the files.
pub fn write(dir: &Path, payload: &Payload, gid: Option<u32>) -> io::Result<bool> {
    for p in payload.keys() {
        validate_path(p).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    std::fs::create_dir_all(dir)?;
    let paths: BTreeSet<&str> = payload.keys().map(String::as_str).collect();
    let old_target = std::fs::read_link(dir.join(DATA_DIR_NAME)).ok();
    if let Some(current) = read_current(dir, &paths)
        && &current == payload
    {
        return Ok(false);
    }
    let old_payload_tops: BTreeSet<String> = old_target
        .as_ref()
        .map(|t| {
            std::fs::read_dir(dir.join(t))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();

    // 1. The new data directory.
    let ts = timestamped_dir(dir)?;
    let result = (|| -> io::Result<()> {
        for (p, f) in payload {
            let path = ts.join(p);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &f.data)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
            if let Some(g) = gid {
                std::os::unix::fs::lchown(&path, None, Some(g))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&ts);
        return Err(e);
    }
    let ts_name = ts.file_name().expect("a named directory").to_owned();

    // 2. Swap `..data` in one rename.
    let tmp = dir.join(NEW_DATA_DIR_NAME);
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA_DIR_NAME))?;

    // 3. User-visible symlinks for the new top-level names; stale ones removed.
    let new_tops: BTreeSet<&str> = payload.keys().map(|p| first_component(p)).collect();
    for top in &new_tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR_NAME).join(top), &link)?;
        }
    }
    for top in old_payload_tops {
        if !new_tops.contains(top.as_str()) {
            let link = dir.join(&top);
            if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(link)?;
            }
        }
    }

    // 4. The old data directory.
    if let Some(old) = old_target
        && old.as_os_str() != ts_name
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(pairs: &[(&str, &str, u32)]) -> Payload {
        pairs
            .iter()
            .map(|(k, v, m)| {
                (
                    k.to_string(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn paths() {
        assert!(validate_path("a/b").is_ok());
        assert!(validate_path("/a").is_err());
        assert!(validate_path("a/../b").is_err());
        assert!(validate_path("..a").is_err());
        assert!(validate_path("").is_err());
    }

    #[test]
    fn update_swaps_data() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert!(
            write(
                dir,
                &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]),
                None
            )
            .unwrap()
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join(DATA_DIR_NAME)).unwrap();
        assert!(first.to_string_lossy().starts_with("..20"));
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        // Same payload: nothing written, `..data` unchanged.
        assert!(
            !write(
                dir,
                &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]),
                None
            )
            .unwrap()
        );
        assert_eq!(std::fs::read_link(dir.join(DATA_DIR_NAME)).unwrap(), first);

        // Update: new data dir, old one gone, removed key's link gone.
        assert!(write(dir, &payload(&[("a", "9", 0o644), ("c", "3", 0o644)]), None).unwrap());
        let second = std::fs::read_link(dir.join(DATA_DIR_NAME)).unwrap();
        assert_ne!(first, second);
        assert!(!dir.join(&first).exists());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "9");
        assert_eq!(std::fs::read_to_string(dir.join("c")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        let names: BTreeSet<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let want: BTreeSet<String> = ["a", "c", DATA_DIR_NAME]
            .into_iter()
            .map(String::from)
            .chain([second.to_string_lossy().into_owned()])
            .collect();
        assert_eq!(names, want);

        // A mode change alone is a change.
        assert!(write(dir, &payload(&[("a", "9", 0o400), ("c", "3", 0o644)]), None).unwrap());
    }

    #[test]
    fn rejects_bad_paths() {
        let d = tempfile::tempdir().unwrap();
        assert!(write(d.path(), &payload(&[("../x", "1", 0o644)]), None).is_err());
        assert!(!d.path().join("..data").exists());
    }
}
