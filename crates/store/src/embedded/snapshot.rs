//! Snapshots: the whole key space at one revision, so the log can be thrown away.
//!
//! A snapshot file `snap-<revision>.snap` is a magic header, one `Put` frame per key in key
//! order, and an `End` frame carrying the revision and the key count; a file without a valid
//! trailer is rejected. It is written to a `.tmp` name, fsynced, renamed into place and the
//! directory fsynced, so a crash leaves either the old state or the new one, never half.
//! Only after that are the older segments and snapshots removed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Record};
use super::wal::{fsync_dir, parse_segment};
use crate::{Error, KeyValue};

const MAGIC: &[u8; 8] = b"RKSNAP01";

/// File name of the snapshot at `rev`.
pub(crate) fn name(rev: i64) -> String {
    format!("snap-{rev:020}.snap")
}

/// The revision of a snapshot, from its file name.
pub(crate) fn parse_name(name: &str) -> Option<i64> {
    name.strip_prefix("snap-")?
        .strip_suffix(".snap")?
        .parse()
        .ok()
}

/// Writes the snapshot of `map` at `rev` durably and returns its path.
pub(crate) fn write(dir: &Path, rev: i64, map: &BTreeMap<String, KeyValue>) -> io::Result<PathBuf> {
    let path = dir.join(name(rev));
    let tmp = dir.join(format!("{}.tmp", name(rev)));
    let file = File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    let mut buf = Vec::new();
    for kv in map.values() {
        buf.clear();
        record::encode(
            &Record::Put {
                rev: kv.mod_revision,
                create_rev: kv.create_revision,
                key: kv.key.clone(),
                value: kv.value.clone(),
            },
            &mut buf,
        );
        w.write_all(&buf)?;
    }
    buf.clear();
    record::encode(
        &Record::End {
            rev,
            count: map.len() as u64,
        },
        &mut buf,
    );
    w.write_all(&buf)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    fsync_dir(dir)?;
    Ok(path)
}

/// Reads and validates a snapshot: its keys and its revision.
pub(crate) fn read(path: &Path) -> Result<(BTreeMap<String, KeyValue>, i64), Error> {
    let bad = |m: &str| Error::Backend(format!("snapshot {}: {m}", path.display()));
    let data = fs::read(path).map_err(|e| bad(&e.to_string()))?;
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(bad("bad magic"));
    }
    let mut map = BTreeMap::new();
    let mut off = MAGIC.len();
    loop {
        let (rec, used) =
            record::decode(&data[off..]).map_err(|e| bad(&format!("{e:?} at {off}")))?;
        off += used;
        match rec {
            Record::Put {
                rev,
                create_rev,
                key,
                value,
            } => {
                let kv = KeyValue {
                    key: key.clone(),
                    value,
                    create_revision: create_rev,
                    mod_revision: rev,
                };
                map.insert(key, kv);
            }
            Record::End { rev, count } => {
                if count != map.len() as u64 || off != data.len() {
                    return Err(bad("trailer does not match contents"));
                }
                return Ok((map, rev));
            }
            Record::Delete { .. } => return Err(bad("delete record in snapshot")),
        }
    }
}

/// Removes snapshots older than `rev` and segments wholly covered by the snapshot at `rev`
/// (those starting at or below it: the segment after the snapshot starts at `rev + 1`).
pub(crate) fn remove_obsolete(dir: &Path, rev: i64) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let obsolete = parse_name(&name).is_some_and(|r| r < rev)
            || parse_segment(&name).is_some_and(|start| start <= rev);
        if obsolete {
            fs::remove_file(entry.path())?;
        }
    }
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(vec![rev as u8; 10]),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = BTreeMap::new();
        for (k, r) in [("/a", 2), ("/b", 5), ("/c/d", 9)] {
            map.insert(k.to_string(), kv(k, r));
        }
        let path = write(dir.path(), 9, &map).unwrap();
        assert_eq!(
            parse_name(&path.file_name().unwrap().to_string_lossy()),
            Some(9)
        );
        let (back, rev) = read(&path).unwrap();
        assert_eq!(rev, 9);
        assert_eq!(back, map);
    }

    #[test]
    fn truncated_snapshot_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = BTreeMap::new();
        map.insert("/a".to_string(), kv("/a", 1));
        let path = write(dir.path(), 1, &map).unwrap();
        let data = fs::read(&path).unwrap();
        for cut in [0, 4, 8, data.len() - 1] {
            fs::write(&path, &data[..cut]).unwrap();
            assert!(read(&path).is_err(), "cut {cut}");
        }
    }
}
