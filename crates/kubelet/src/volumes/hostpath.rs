//! hostPath volumes: the `type` checks upstream's hostPath plugin makes before a pod may use
//! the path, with its error messages.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Checks (and for the `…OrCreate` types, creates) `path` for `hostPath.type`; `None` or `""`
/// checks nothing. Errors read as upstream's, e.g.
/// `hostPath type check failed: /x is not a directory`.
pub fn check_type(path: &str, kind: Option<&str>) -> Result<(), String> {
    let p = Path::new(path);
    // Follow symlinks, as upstream's checks stat the path.
    let meta = std::fs::metadata(p).ok();
    let ft = meta.as_ref().map(|m| m.file_type());
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match kind.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            std::fs::create_dir_all(p).map_err(|e| format!("mkdir {path}: {e}"))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("chmod {path}: {e}"))
        }
        "DirectoryOrCreate" | "Directory" => {
            if ft.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "FileOrCreate" if meta.is_none() => {
            // Upstream creates the file only, not missing parents.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("open {path}: {e}"))?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("chmod {path}: {e}"))
        }
        "FileOrCreate" | "File" => {
            if ft.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "Socket" => {
            if ft.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                fail("a socket file")
            }
        }
        "CharDevice" => {
            if ft.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                fail("a character device")
            }
        }
        "BlockDevice" => {
            if ft.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                fail("a block device")
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_checks() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap().to_string();
        let file = format!("{dir}/f");
        std::fs::write(&file, "x").unwrap();
        let missing = format!("{dir}/missing");

        assert!(check_type(&missing, None).is_ok());
        assert!(check_type(&dir, Some("Directory")).is_ok());
        assert_eq!(
            check_type(&file, Some("Directory")).unwrap_err(),
            format!("hostPath type check failed: {file} is not a directory")
        );
        assert_eq!(
            check_type(&missing, Some("Directory")).unwrap_err(),
            format!("hostPath type check failed: {missing} is not a directory")
        );
        assert!(check_type(&file, Some("File")).is_ok());
        assert_eq!(
            check_type(&dir, Some("File")).unwrap_err(),
            format!("hostPath type check failed: {dir} is not a file")
        );
        assert_eq!(
            check_type(&file, Some("DirectoryOrCreate")).unwrap_err(),
            format!("hostPath type check failed: {file} is not a directory")
        );
        let made = format!("{dir}/a/b");
        check_type(&made, Some("DirectoryOrCreate")).unwrap();
        assert!(Path::new(&made).is_dir());
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        let newfile = format!("{dir}/new");
        check_type(&newfile, Some("FileOrCreate")).unwrap();
        assert!(Path::new(&newfile).is_file());
        // FileOrCreate does not create parents.
        assert!(check_type(&format!("{dir}/x/y"), Some("FileOrCreate")).is_err());
        assert_eq!(
            check_type(&file, Some("Socket")).unwrap_err(),
            format!("hostPath type check failed: {file} is not a socket file")
        );
        assert!(check_type("/dev/null", Some("CharDevice")).is_ok());
        assert_eq!(
            check_type("/dev/null", Some("BlockDevice")).unwrap_err(),
            "hostPath type check failed: /dev/null is not a block device"
        );
        assert_eq!(
            check_type(&dir, Some("Weird")).unwrap_err(),
            "Weird is an invalid volume type"
        );
        let sock = format!("{dir}/s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert!(check_type(&sock, Some("Socket")).is_ok());
    }
}
