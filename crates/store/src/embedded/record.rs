//! The on-disk record format shared by the write-ahead log and snapshots.
//!
//! Every record is framed as `[len: u32 LE][crc32(payload): u32 LE][payload]`. The length lets
//! recovery skip from record to record; the CRC tells a complete record from a torn or garbled
//! one (a crash in the middle of `write()` leaves a partial tail). The payload is a tiny
//! hand-rolled binary encoding rather than serde: it is three record kinds, it never changes
//! shape silently, and it copies the value bytes exactly once.

use bytes::Bytes;

/// Bytes of framing before every payload.
pub(crate) const FRAME_HEADER: usize = 8;

/// Larger payloads are treated as corruption (a garbled length), never allocated.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_END: u8 = 3;

/// One logical record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `key` set to `value` at revision `rev` (its mod revision); created at `create_rev`.
    Put {
        rev: i64,
        create_rev: i64,
        key: String,
        value: Bytes,
    },
    /// `key` deleted at revision `rev`.
    Delete { rev: i64, key: String },
    /// Snapshot trailer: the snapshot holds `count` keys as of revision `rev`.
    End { rev: i64, count: u64 },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The buffer ends inside the frame, or its CRC does not match: a torn write.
    Torn,
    /// The CRC matches but the payload makes no sense: real corruption or a format bug.
    Invalid(String),
}

/// Appends the framed encoding of `rec` to `out`.
pub(crate) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    match rec {
        Record::Put {
            rev,
            create_rev,
            key,
            value,
        } => {
            out.push(TAG_PUT);
            out.extend_from_slice(&rev.to_le_bytes());
            out.extend_from_slice(&create_rev.to_le_bytes());
            put_str(out, key);
            out.extend_from_slice(value);
        }
        Record::Delete { rev, key } => {
            out.push(TAG_DELETE);
            out.extend_from_slice(&rev.to_le_bytes());
            put_str(out, key);
        }
        Record::End { rev, count } => {
            out.push(TAG_END);
            out.extend_from_slice(&rev.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Decodes the frame at the start of `buf`, returning the record and the bytes it used.
pub(crate) fn decode(buf: &[u8]) -> Result<(Record, usize), FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Torn);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_PAYLOAD || buf.len() - FRAME_HEADER < len {
        return Err(FrameError::Torn);
    }
    let payload = &buf[FRAME_HEADER..FRAME_HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Torn);
    }
    let rec = decode_payload(payload).map_err(FrameError::Invalid)?;
    Ok((rec, FRAME_HEADER + len))
}

/// A cursor over a payload that fails instead of panicking on short input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record payload too short".to_string());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, String> {
        let b = self.take(4)?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| "record key is not UTF-8".to_string())
    }
}

fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    let mut c = Cursor(payload);
    match c.u8()? {
        TAG_PUT => {
            let rev = c.i64()?;
            let create_rev = c.i64()?;
            let key = c.string()?;
            let value = Bytes::copy_from_slice(c.0);
            Ok(Record::Put {
                rev,
                create_rev,
                key,
                value,
            })
        }
        TAG_DELETE => {
            let rev = c.i64()?;
            let key = c.string()?;
            Ok(Record::Delete { rev, key })
        }
        TAG_END => {
            let rev = c.i64()?;
            let count = c.i64()? as u64;
            Ok(Record::End { rev, count })
        }
        t => Err(format!("unknown record tag {t}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(rec: Record) {
        let mut buf = Vec::new();
        encode(&rec, &mut buf);
        let (back, used) = decode(&buf).expect("decodes");
        assert_eq!(back, rec);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn records_roundtrip() {
        roundtrip(Record::Put {
            rev: 7,
            create_rev: 3,
            key: "/registry/pods/default/web".into(),
            value: Bytes::from_static(b"{\"kind\":\"Pod\"}"),
        });
        roundtrip(Record::Put {
            rev: 1,
            create_rev: 1,
            key: String::new(),
            value: Bytes::new(),
        });
        roundtrip(Record::Delete {
            rev: 9,
            key: "/a".into(),
        });
        roundtrip(Record::End { rev: 42, count: 5 });
    }

    #[test]
    fn every_truncation_is_torn() {
        let mut buf = Vec::new();
        encode(
            &Record::Put {
                rev: 2,
                create_rev: 2,
                key: "/k".into(),
                value: Bytes::from_static(b"value"),
            },
            &mut buf,
        );
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut]), Err(FrameError::Torn), "cut at {cut}");
        }
    }

    #[test]
    fn flipped_bit_is_torn() {
        let mut buf = Vec::new();
        encode(
            &Record::Delete {
                rev: 3,
                key: "/k".into(),
            },
            &mut buf,
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn garbage_with_valid_crc_is_invalid_not_panic() {
        let payload = [99u8, 1, 2];
        let mut buf = Vec::new();
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        assert!(matches!(decode(&buf), Err(FrameError::Invalid(_))));
        let payload = [TAG_PUT, 1];
        let mut buf = Vec::new();
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        assert!(matches!(decode(&buf), Err(FrameError::Invalid(_))));
    }
}
