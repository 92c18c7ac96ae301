//! The write-ahead log: numbered segment files and crash recovery.
//!
//! The log is a sequence of segments `wal-<first revision>.log`, each an append-only run of
//! [`record`](super::record) frames with consecutive revisions. Only the newest segment is ever
//! written, and a segment is closed only after everything in it was fdatasync'ed, so a torn
//! (partial or CRC-failing) frame can only be the tail of the newest segment: recovery truncates
//! it there. Anything else that fails to decode is corruption and stops the open, because
//! silently dropping acknowledged writes is worse than refusing to start.
//!
//! Recovery = newest snapshot + replay of every record with a higher revision, in order.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{self, FrameError, Record};
use super::snapshot;
use crate::{Error, KeyValue};

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct LogFile {
    file: File,
    /// Bytes in the segment.
    pub(crate) bytes: u64,
}

impl LogFile {
    /// Appends `buf` and makes it durable with one fdatasync.
    pub(crate) fn append_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) map: BTreeMap<String, KeyValue>,
    pub(crate) rev: i64,
    pub(crate) log: LogFile,
}

/// File name of the segment whose first record has revision `start`.
pub(crate) fn segment_name(start: i64) -> String {
    format!("wal-{start:020}.log")
}

/// The first revision of a segment, from its file name.
pub(crate) fn parse_segment(name: &str) -> Option<i64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// fsyncs a directory so that creates, renames and removes in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new, empty segment starting at revision `start` and makes its existence durable.
pub(crate) fn create_segment(dir: &Path, start: i64) -> io::Result<LogFile> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(segment_name(start)))?;
    fsync_dir(dir)?;
    Ok(LogFile { file, bytes: 0 })
}

fn backend(what: impl std::fmt::Display) -> Error {
    Error::Backend(what.to_string())
}

/// Rebuilds the state from `dir` (created if missing), truncating a torn log tail.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, Error> {
    let mut snaps: Vec<(i64, PathBuf)> = Vec::new();
    let mut segs: Vec<(i64, PathBuf)> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| backend(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(backend)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // An unfinished snapshot: the log it was to replace is still there.
            fs::remove_file(entry.path()).map_err(backend)?;
        } else if let Some(rev) = snapshot::parse_name(&name) {
            snaps.push((rev, entry.path()));
        } else if let Some(start) = parse_segment(&name) {
            segs.push((start, entry.path()));
        }
    }
    snaps.sort();
    segs.sort();

    let (mut map, snap_rev) = match snaps.last() {
        Some((_, path)) => snapshot::read(path)?,
        None => (BTreeMap::new(), 0),
    };
    let mut rev = snap_rev;

    let last = segs.len().saturating_sub(1);
    for (i, (_, path)) in segs.iter().enumerate() {
        let data = fs::read(path).map_err(|e| backend(format!("{}: {e}", path.display())))?;
        let mut off = 0;
        while off < data.len() {
            match record::decode(&data[off..]) {
                Ok((rec, used)) => {
                    replay(&mut map, &mut rev, snap_rev, rec)
                        .map_err(|m| backend(format!("{} at byte {off}: {m}", path.display())))?;
                    off += used;
                }
                Err(FrameError::Torn) if i == last => {
                    tracing::warn!(
                        path = %path.display(),
                        offset = off,
                        dropped = data.len() - off,
                        "truncating torn tail of the write-ahead log"
                    );
                    let f = OpenOptions::new().write(true).open(path).map_err(backend)?;
                    f.set_len(off as u64).map_err(backend)?;
                    f.sync_all().map_err(backend)?;
                    break;
                }
                Err(FrameError::Torn) => {
                    return Err(backend(format!(
                        "{}: corrupt record at byte {off} in a closed segment",
                        path.display()
                    )));
                }
                Err(FrameError::Invalid(m)) => {
                    return Err(backend(format!("{}: byte {off}: {m}", path.display())));
                }
            }
        }
    }

    let log = match segs.last() {
        Some((_, path)) => {
            let file = OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(backend)?;
            let bytes = file.metadata().map_err(backend)?.len();
            LogFile { file, bytes }
        }
        None => create_segment(dir, rev + 1).map_err(backend)?,
    };
    Ok(Recovered { map, rev, log })
}

/// Applies one log record during recovery.
fn replay(
    map: &mut BTreeMap<String, KeyValue>,
    rev: &mut i64,
    snap_rev: i64,
    rec: Record,
) -> Result<(), String> {
    let r = match &rec {
        Record::Put { rev, .. } | Record::Delete { rev, .. } => *rev,
        Record::End { .. } => return Err("snapshot trailer inside the log".into()),
    };
    if r <= snap_rev {
        return Ok(()); // already in the snapshot
    }
    if r != *rev + 1 {
        return Err(format!("revision {r} follows {}", *rev));
    }
    *rev = r;
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
        Record::Delete { key, .. } => {
            map.remove(&key);
        }
        Record::End { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn put(rev: i64, key: &str) -> Vec<u8> {
        let mut b = Vec::new();
        record::encode(
            &Record::Put {
                rev,
                create_rev: rev,
                key: key.into(),
                value: Bytes::from(format!("v{rev}")),
            },
            &mut b,
        );
        b
    }

    #[test]
    fn names_roundtrip() {
        assert_eq!(parse_segment(&segment_name(17)), Some(17));
        assert_eq!(parse_segment("wal-x.log"), None);
        assert_eq!(parse_segment("snap-1.snap"), None);
    }

    #[test]
    fn empty_dir_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.rev, 0);
        assert!(r.map.is_empty());
        assert!(dir.path().join(segment_name(1)).exists());
    }

    #[test]
    fn replays_and_truncates_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(1));
        let mut data = put(1, "/a");
        data.extend(put(2, "/b"));
        let good = data.len();
        let third = put(3, "/c");
        data.extend_from_slice(&third[..third.len() - 2]);
        fs::write(&path, &data).unwrap();
        let r = recover(dir.path()).unwrap();
        assert_eq!(r.rev, 2);
        assert_eq!(r.map.len(), 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), good as u64);
        assert_eq!(r.log.bytes, good as u64);
    }

    #[test]
    fn corruption_in_closed_segment_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = put(1, "/a");
        let n = first.len();
        first[n - 1] ^= 1;
        fs::write(dir.path().join(segment_name(1)), &first).unwrap();
        fs::write(dir.path().join(segment_name(2)), put(2, "/b")).unwrap();
        assert!(matches!(recover(dir.path()), Err(Error::Backend(_))));
    }

    #[test]
    fn revision_gap_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = put(1, "/a");
        data.extend(put(3, "/b"));
        fs::write(dir.path().join(segment_name(1)), &data).unwrap();
        assert!(matches!(recover(dir.path()), Err(Error::Backend(_))));
    }
}
