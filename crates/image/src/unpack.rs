//! Unpacking one layer tarball (gzip, zstd or plain) into a directory that overlayfs can use
//! as a `lowerdir`.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → a 0/0 character device `NAME`,
//! `.wh..wh..opq` → xattr `trusted.overlay.opaque=y` on its directory. Ownership, modes,
//! xattrs and mtimes are kept (we run as root). No entry may write outside the layer
//! directory: `..` that climbs out is refused, and symlinks met on the way to an entry are
//! resolved inside the layer directory (as containerd's `fs.RootPath` does).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timestamps, XattrFlags};
use tar::EntryType;

use crate::digest::HashingReader;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const MAX_SYMLINK_HOPS: usize = 40;

/// Compression of a layer, sniffed from its first bytes (media types are not trusted: Docker
/// archives call gzip layers `.tar`, and some registries mislabel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps a reader with the decompressor its first bytes ask for.
pub(crate) fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = {
        use std::io::BufRead;
        reader.fill_buf()?.to_vec()
    };
    Ok(match Compression::sniff(&head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    })
}

/// Unpacks the layer blob at `blob` into the (empty) directory `dest`; returns the layer's
/// diff id (sha256 of the uncompressed tar).
pub(crate) fn unpack_layer_file(blob: &Path, dest: &Path) -> anyhow::Result<String> {
    let file =
        File::open(blob).map_err(|e| anyhow::anyhow!("opening layer {}: {e}", blob.display()))?;
    unpack_layer(file, dest)
}

/// Unpacks a (possibly compressed) layer stream into `dest`; returns its diff id.
pub(crate) fn unpack_layer<R: Read>(reader: R, dest: &Path) -> anyhow::Result<String> {
    let mut hashing = HashingReader::new(decompress(reader)?);
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive
            .entries()
            .map_err(|e| anyhow::anyhow!("reading layer: {e}"))?
        {
            let mut entry = entry.map_err(|e| anyhow::anyhow!("reading layer: {e}"))?;
            let path = entry
                .path()
                .map_err(|e| anyhow::anyhow!("reading layer entry name: {e}"))?
                .into_owned();
            unpack_entry(&mut entry, &path, dest, &mut dirs)
                .map_err(|e| anyhow::anyhow!("unpacking layer entry {}: {e}", path.display()))?;
        }
    }
    // Directory mtimes last: creating their children changed them.
    for (dir, mtime) in dirs.iter().rev() {
        set_mtime(dir, mtime_of(*mtime)).ok();
    }
    Ok(hashing.finish()?)
}

fn mtime_of(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(0)
}

fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
    root: &Path,
    dirs: &mut Vec<(PathBuf, u64)>,
) -> io::Result<()> {
    let components = clean_path(path)?;
    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0);

    let Some((name, parents)) = components.split_last() else {
        // The layer root itself (`./`).
        if kind.is_dir() {
            apply_owner_mode(root, uid, gid, mode, false)?;
            dirs.push((root.to_path_buf(), mtime));
        }
        return Ok(());
    };
    let parent = resolve_dir(root, parents, true)?;
    let name_str = name.to_string_lossy();

    if name_str == WHITEOUT_OPAQUE {
        return set_xattr(&parent, "trusted.overlay.opaque", b"y");
    }
    if name_str.starts_with(WHITEOUT_META_PREFIX) {
        // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not part of the filesystem.
        return Ok(());
    }
    if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(io::Error::other("invalid whiteout name"));
        }
        let target = parent.join(hidden);
        remove_existing(&target)?;
        rustix::fs::mknodat(
            CWD,
            &target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )?;
        return Ok(());
    }

    let target = parent.join(name);
    match kind {
        EntryType::Directory => {
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_existing(&target)?;
                    fs::create_dir(&target)?;
                }
                Err(_) => fs::create_dir(&target)?,
            }
            apply_owner_mode(&target, uid, gid, mode, false)?;
            apply_xattrs(entry, &target)?;
            dirs.push((target, mtime));
            return Ok(());
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            remove_existing(&target)?;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)?;
            io::copy(entry, &mut f)?;
            drop(f);
            apply_owner_mode(&target, uid, gid, mode, false)?;
        }
        EntryType::Symlink => {
            let link = entry
                .link_name()?
                .ok_or_else(|| io::Error::other("symlink without a target"))?;
            remove_existing(&target)?;
            symlink(&link, &target)?;
            apply_owner_mode(&target, uid, gid, mode, true)?;
        }
        EntryType::Link => {
            let link = entry
                .link_name()?
                .ok_or_else(|| io::Error::other("hardlink without a target"))?;
            let link_components = clean_path(&link)?;
            let Some((link_name, link_parents)) = link_components.split_last() else {
                return Err(io::Error::other("hardlink to the layer root"));
            };
            let source = resolve_dir(root, link_parents, false)?.join(link_name);
            if fs::symlink_metadata(&source).is_err() {
                return Err(io::Error::other(format!(
                    "hardlink target {} is not in the layer",
                    link.display()
                )));
            }
            if source != target {
                remove_existing(&target)?;
                fs::hard_link(&source, &target)?;
            }
            // Same inode as its target: owner, mode and times are already the target's.
            return Ok(());
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let ft = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            let dev = rustix::fs::makedev(
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0),
            );
            remove_existing(&target)?;
            rustix::fs::mknodat(CWD, &target, ft, Mode::from_raw_mode(mode), dev)?;
            apply_owner_mode(&target, uid, gid, mode, false)?;
        }
        other => {
            tracing::debug!("skipping layer entry {} of type {other:?}", path.display());
            return Ok(());
        }
    }
    apply_xattrs(entry, &target)?;
    set_mtime(&target, mtime_of(mtime))?;
    Ok(())
}

/// Lexically cleans an entry path into components; `..` that climbs out of the layer root is
/// an error.
fn clean_path(path: &Path) -> io::Result<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(io::Error::other(format!(
                        "path {} escapes the layer directory",
                        path.display()
                    )));
                }
            }
            Component::Normal(n) => out.push(n.to_os_string()),
        }
    }
    Ok(out)
}

/// Resolves a directory path inside `root`, following symlinks as if `root` were `/`, and
/// (when `create`) creating missing directories with mode 0755.
fn resolve_dir(root: &Path, components: &[OsString], create: bool) -> io::Result<PathBuf> {
    let mut stack: Vec<OsString> = Vec::new();
    let mut queue: std::collections::VecDeque<OsString> = components.iter().cloned().collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c == OsStr::new(".") || c.is_empty() {
            continue;
        }
        if c == OsStr::new("..") {
            stack.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&stack);
        candidate.push(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.is_dir() => stack.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    stack.clear();
                }
                let mut new_queue: std::collections::VecDeque<OsString> = target
                    .components()
                    .filter_map(|tc| match tc {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some(OsString::from("..")),
                        _ => None,
                    })
                    .collect();
                new_queue.extend(queue);
                queue = new_queue;
            }
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a directory",
                    candidate.strip_prefix(root).unwrap_or(&candidate).display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&candidate)?;
                fs::set_permissions(&candidate, fs::Permissions::from_mode(0o755))?;
                stack.push(c);
            }
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Ok(out)
}

/// Removes whatever is at `path` (never following a symlink there).
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn apply_owner_mode(
    path: &Path,
    uid: u64,
    gid: u64,
    mode: u32,
    is_symlink: bool,
) -> io::Result<()> {
    let uid = u32::try_from(uid).map_err(|_| io::Error::other("uid out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| io::Error::other("gid out of range"))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    // chown clears set-id bits, so the mode goes on after it; symlinks have no mode of their own.
    if !is_symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(());
    };
    let mut attrs = Vec::new();
    for ext in exts {
        let ext = ext?;
        if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            attrs.push((name.to_vec(), ext.value_bytes().to_vec()));
        }
    }
    for (name, value) in attrs {
        let name = OsStr::from_bytes(&name);
        if let Err(e) = rustix::fs::lsetxattr(path, name, &value, XattrFlags::empty()) {
            // Some xattrs cannot be set on every filesystem; the file is still usable.
            tracing::debug!("xattr {name:?} on {}: {e}", path.display());
        }
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).map_err(|e| {
        io::Error::other(format!(
            "setting {name} on {}: {e} (the image store needs a filesystem with trusted xattrs, \
             and root)",
            path.display()
        ))
    })
}

fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use super::*;

    fn header(kind: EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_path(path).unwrap();
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(size);
        h.set_cksum();
        h
    }

    fn tarball(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) {
        let h = header(EntryType::Regular, path, mode, data.len() as u64);
        b.append(&h, data).unwrap();
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
        b.append(&header(EntryType::Directory, path, 0o755, 0), &[][..])
            .unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
        let mut h = header(kind, path, 0o777, 0);
        b.append_link(&mut h, path, target).unwrap();
    }

    #[test]
    fn converts_whiteouts_and_keeps_metadata() {
        let tar = tarball(|b| {
            dir(b, "etc/");
            file(b, "etc/.wh.passwd", b"", 0o644);
            dir(b, "var/cache/");
            file(b, "var/cache/.wh..wh..opq", b"", 0o644);
            file(b, "bin/tool", b"#!/bin/sh\n", 0o4755);
            link(b, EntryType::Symlink, "bin/sh", "tool");
            link(b, EntryType::Link, "bin/tool2", "bin/tool");
            file(b, ".wh..wh.plnk", b"", 0o644);
        });
        let dest = tempfile::tempdir().unwrap();
        let diff_id = unpack_layer(&tar[..], dest.path()).unwrap();
        assert_eq!(diff_id, crate::digest::sha256_of(&tar));
        let d = dest.path();
        let wh = fs::symlink_metadata(d.join("etc/passwd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!d.join("etc/.wh.passwd").exists());
        let opaque =
            rustix::fs::lgetxattr(d.join("var/cache"), "trusted.overlay.opaque", &mut [0u8; 8]);
        assert_eq!(opaque.unwrap(), 1);
        assert!(!d.join("var/cache/.wh..wh..opq").exists());
        let tool = fs::metadata(d.join("bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        assert_eq!(tool.mtime(), 1_000_000);
        assert_eq!(fs::read_link(d.join("bin/sh")).unwrap(), Path::new("tool"));
        assert_eq!(fs::metadata(d.join("bin/tool2")).unwrap().ino(), tool.ino());
        assert_eq!(fs::metadata(d.join("etc")).unwrap().mtime(), 1_000_000);
        assert!(!d.join(".wh..wh.plnk").exists());
    }

    #[test]
    fn refuses_paths_escaping_the_layer() {
        let outside = tempfile::tempdir().unwrap();
        // `..` that climbs out.
        let mut raw = header(EntryType::Regular, "x", 0o644, 1);
        raw.as_old_mut().name[..8].copy_from_slice(b"../evil\0");
        raw.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&raw, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let e = unpack_layer(&tar[..], dest.path()).unwrap_err().to_string();
        assert!(e.contains("escapes the layer directory"), "{e}");

        // A symlink pointing outside, then a file through it: lands inside the layer.
        let target = outside.path().to_str().unwrap().to_string();
        let tar = tarball(|b| {
            link(b, EntryType::Symlink, "out", &target);
            file(b, "out/pwned", b"x", 0o644);
            link(b, EntryType::Symlink, "up", "../../../../..");
            file(b, "up/pwned2", b"x", 0o644);
        });
        let dest = tempfile::tempdir().unwrap();
        unpack_layer(&tar[..], dest.path()).unwrap();
        assert!(!outside.path().join("pwned").exists());
        assert!(
            dest.path()
                .join(target.trim_start_matches('/'))
                .join("pwned")
                .exists()
        );
        assert!(dest.path().join("pwned2").exists());

        // A hardlink to something outside the layer.
        let tar = tarball(|b| link(b, EntryType::Link, "pw", "../../etc/passwd"));
        let dest = tempfile::tempdir().unwrap();
        assert!(unpack_layer(&tar[..], dest.path()).is_err());
    }

    #[test]
    fn handles_gzip_and_zstd() {
        let tar = tarball(|b| file(b, "a", b"hello", 0o600));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for data in [gz, zst] {
            let dest = tempfile::tempdir().unwrap();
            let diff_id = unpack_layer(&data[..], dest.path()).unwrap();
            assert_eq!(diff_id, crate::digest::sha256_of(&tar));
            assert_eq!(fs::read(dest.path().join("a")).unwrap(), b"hello");
        }
    }
}
