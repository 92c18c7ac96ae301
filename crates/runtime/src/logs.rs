//! The CRI log format the kubelet reads: one record per line,
//! `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <content>`.
//!
//! `F` closes a line the process ended with a newline; `P` marks a piece of a longer line:
//! content longer than [`MAX_LINE`] is split, and a chunk that does not end in a newline is
//! written at once as `P` (as CRI-O does) so that a prompt or a progress bar shows up in
//! `kubectl logs -f` without waiting for its newline.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest content of one record; longer lines are split into `P` records (16 KiB, as
/// containerd's default).
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Which stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends CRI records to a container's log file.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: Option<File>,
}

impl LogWriter {
    /// Opens (creating parents) the log file in append mode.
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        let mut w = LogWriter {
            path: path.to_path_buf(),
            file: None,
        };
        w.reopen()?;
        Ok(w)
    }

    /// Reopens the file by path (after the kubelet rotated it away).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }

    /// Writes one chunk read from `stream` as records.
    pub fn write_chunk(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let buf = format_chunk(&timestamp(now()), stream, data);
        file.write_all(&buf)
    }
}

/// Formats a chunk as CRI records (see the module doc).
pub(crate) fn format_chunk(ts: &str, stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, full, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl <= MAX_LINE => (&rest[..nl], true, nl + 1),
            _ if rest.len() > MAX_LINE => (&rest[..MAX_LINE], false, MAX_LINE),
            _ => (rest, false, rest.len()),
        };
        out.extend_from_slice(ts.as_bytes());
        out.push(b' ');
        out.extend_from_slice(stream.as_str().as_bytes());
        out.extend_from_slice(if full { b" F " } else { b" P " });
        out.extend_from_slice(piece);
        out.push(b'\n');
        rest = &rest[advance..];
    }
    out
}

fn now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// `2026-11-22T03:50:01.123456789Z` (UTC, always nine fraction digits).
pub(crate) fn timestamp((secs, nanos): (i64, u32)) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp((0, 5)), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(
            timestamp((1_795_233_001, 123_456_789)),
            "2026-11-21T03:50:01.123456789Z"
        );
        assert_eq!(
            timestamp((951_782_400, 0)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn records() {
        let out = format_chunk("T", Stream::Stdout, b"a\nb\n\nc");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "T stdout F a\nT stdout F b\nT stdout F \nT stdout P c\n"
        );
        let long = vec![b'x'; MAX_LINE + 3];
        let mut data = long.clone();
        data.push(b'\n');
        let out = String::from_utf8(format_chunk("T", Stream::Stderr, &data)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("T stderr P xxx"));
        assert_eq!(lines[1], "T stderr F xxx");
    }
}
