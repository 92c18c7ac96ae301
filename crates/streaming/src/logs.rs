//! `GET /containerLogs/{ns}/{pod}/{container}`: reading CRI-format log files.
//!
//! Each line of `<log_dir>/<container>/<attempt>.log` is
//! `<RFC 3339 time> <stdout|stderr> <tags> <text>`, where the tag `P` marks a partial line that
//! the next record continues and `F` a full one. The kubelet's container log manager rotates
//! the live file to `<attempt>.log.<timestamp>` (older ones gzipped with `.gz`); rotated files
//! are read before the live one.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use rkube_cri::{ContainerState, RuntimeService};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// One parsed record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMessage {
    /// When the runtime wrote it.
    pub timestamp: Timestamp,
    /// stdout or stderr.
    pub stream: LogStream,
    /// `P`: the next record continues this line.
    pub partial: bool,
    /// The text, without the line's newline.
    pub content: Bytes,
}

/// Parses one line of a CRI log file (without its trailing newline). `None` for lines that do
/// not follow the format (they are skipped, as the kubelet does).
pub fn parse_line(line: &[u8]) -> Option<LogMessage> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let tags = parts.next()?;
    let content = parts.next().unwrap_or(b"");
    let timestamp: Timestamp = ts.parse().ok()?;
    let partial = tags.split(|b| *b == b':').any(|t| t == b"P");
    Some(LogMessage {
        timestamp,
        stream,
        partial,
        content: Bytes::copy_from_slice(content),
    })
}

/// What a logs request asks for (the kubelet's `containerLogs` query parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming until the container exits.
    pub follow: bool,
    /// The previous attempt of the container instead of the current one.
    pub previous: bool,
    /// Only records at or after this time (`sinceSeconds` / `sinceTime`).
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// Only the last N lines (before following).
    pub tail_lines: Option<usize>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Only this stream (`stream=Stdout|Stderr`; `All` or absent: both).
    pub stream: Option<LogStream>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?} for {key}")),
    }
}

impl LogOptions {
    /// Reads the query string of a `containerLogs` (or `pods/log`) request.
    pub fn from_query(query: Option<&str>) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let mut tail: Option<i64> = None;
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "follow" => o.follow = parse_bool("follow", &v)?,
                "previous" => o.previous = parse_bool("previous", &v)?,
                "timestamps" => o.timestamps = parse_bool("timestamps", &v)?,
                "sinceSeconds" => {
                    let s: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if s < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    o.since = Some(
                        Timestamp::now()
                            .checked_sub(jiff::SignedDuration::from_secs(s))
                            .unwrap_or(Timestamp::MIN),
                    );
                }
                "sinceTime" => {
                    o.since = Some(
                        v.parse()
                            .map_err(|e| format!("invalid sinceTime {v:?}: {e}"))?,
                    );
                }
                "tailLines" => {
                    tail = Some(v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "stream" => {
                    o.stream = match v.as_ref() {
                        "Stdout" => Some(LogStream::Stdout),
                        "Stderr" => Some(LogStream::Stderr),
                        "All" | "" => None,
                        other => return Err(format!("invalid stream {other:?}")),
                    }
                }
                _ => {}
            }
        }
        // Negative tailLines means "all", as upstream.
        o.tail_lines = tail.and_then(|t| usize::try_from(t).ok());
        Ok(o)
    }
}

/// Failures finding a container's log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `previous` asked, but the container has not restarted.
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious {
        /// Container name.
        container: String,
        /// Pod name.
        pod: String,
    },
    /// Reading the directory failed.
    #[error("reading logs of container {container:?}: {source}")]
    Io {
        /// Container name.
        container: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The files holding one attempt's log, oldest first: rotated ones, then the live file (which
/// may not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFiles {
    /// Rotated files, oldest first.
    pub rotated: Vec<PathBuf>,
    /// `<attempt>.log`.
    pub live: PathBuf,
}

/// Finds the files of the current (or, with `previous`, the previous) attempt of a container
/// under `container_dir` (`<pod log dir>/<container>`). `None`: no log was ever written.
pub fn log_files(
    container_dir: &Path,
    container: &str,
    pod: &str,
    previous: bool,
) -> Result<Option<LogFiles>, LogError> {
    let mut attempts: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    let entries = match std::fs::read_dir(container_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if previous {
                return Err(LogError::NoPrevious {
                    container: container.into(),
                    pod: pod.into(),
                });
            }
            return Ok(None);
        }
        Err(source) => {
            return Err(LogError::Io {
                container: container.into(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((n, _)) = name.split_once(".log") else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>() {
            attempts.entry(n).or_default().push(name);
        }
    }
    let mut keys = attempts.keys().rev();
    let current = keys.next().copied();
    let chosen = if previous {
        keys.next().copied()
    } else {
        current
    };
    let Some(attempt) = chosen else {
        if previous {
            return Err(LogError::NoPrevious {
                container: container.into(),
                pod: pod.into(),
            });
        }
        return Ok(None);
    };
    let live_name = format!("{attempt}.log");
    let mut rotated: Vec<String> = attempts
        .remove(&attempt)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n != &live_name && n.starts_with(&format!("{live_name}.")))
        .collect();
    // Rotation suffixes are fixed-width timestamps (`20260101-150405`), so name order is time
    // order; `.gz` does not change it.
    rotated.sort();
    Ok(Some(LogFiles {
        rotated: rotated.iter().map(|n| container_dir.join(n)).collect(),
        live: container_dir.join(live_name),
    }))
}

/// Formats RFC 3339 with nanoseconds as Go's `time.RFC3339Nano` does (trailing zeros of the
/// fraction dropped), which is how the kubelet prints `--timestamps`.
pub fn format_rfc3339_nano(ts: Timestamp) -> String {
    let secs = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = ts.subsec_nanosecond();
    if nanos == 0 {
        return format!("{secs}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}Z", frac.trim_end_matches('0'))
}

/// Whether the emitter wants more.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    More,
    Stop,
}

/// Applies the filters and formatting and sends the bytes.
struct Emitter {
    opts: LogOptions,
    tx: mpsc::Sender<Bytes>,
    written: u64,
    line_start: bool,
}

impl Emitter {
    async fn emit(&mut self, m: &LogMessage) -> Flow {
        if self.opts.since.is_some_and(|s| m.timestamp < s) {
            return Flow::More;
        }
        let mut out = Vec::with_capacity(m.content.len() + 40);
        if self.opts.timestamps && self.line_start {
            out.extend_from_slice(format_rfc3339_nano(m.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&m.content);
        if !m.partial {
            out.push(b'\n');
        }
        self.line_start = !m.partial;
        let mut flow = Flow::More;
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.written) as usize;
            if out.len() >= left {
                out.truncate(left);
                flow = Flow::Stop;
            }
        }
        self.written += out.len() as u64;
        if !out.is_empty() && self.tx.send(Bytes::from(out)).await.is_err() {
            return Flow::Stop;
        }
        flow
    }
}

/// Routes records either straight to the emitter or, while `tailLines` is being honoured, into
/// a ring of the last N logical lines.
struct Pipeline {
    emitter: Emitter,
    tail: Option<(usize, VecDeque<Vec<LogMessage>>, Vec<LogMessage>)>,
}

impl Pipeline {
    async fn push(&mut self, m: LogMessage) -> Flow {
        if self.emitter.opts.stream.is_some_and(|s| s != m.stream) {
            return Flow::More;
        }
        match &mut self.tail {
            None => self.emitter.emit(&m).await,
            Some((n, ring, pending)) => {
                let partial = m.partial;
                pending.push(m);
                if !partial {
                    ring.push_back(std::mem::take(pending));
                    while ring.len() > *n {
                        ring.pop_front();
                    }
                }
                Flow::More
            }
        }
    }

    /// Emits what the tail ring holds; later records go straight out.
    async fn end_tail(&mut self) -> Flow {
        let Some((_, ring, pending)) = self.tail.take() else {
            return Flow::More;
        };
        for line in ring.into_iter().chain(std::iter::once(pending)) {
            for m in &line {
                if self.emitter.emit(m).await == Flow::Stop {
                    return Flow::Stop;
                }
            }
        }
        Flow::More
    }
}

/// Splits a byte buffer into complete lines, keeping an unfinished last line for later.
#[derive(Default)]
struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, data: &[u8], out: &mut Vec<LogMessage>) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            if let Some(m) = parse_line(&self.buf[start..start + pos]) {
                out.push(m);
            }
            start += pos + 1;
        }
        self.buf.drain(..start);
    }

    /// A file ended without a newline (rotated mid-write): take what is there.
    fn finish(&mut self, out: &mut Vec<LogMessage>) {
        if !self.buf.is_empty() {
            if let Some(m) = parse_line(&self.buf) {
                out.push(m);
            }
            self.buf.clear();
        }
    }
}

/// How to tell that a followed container has ended.
pub struct FollowTarget {
    /// The runtime to ask.
    pub runtime: Arc<dyn RuntimeService>,
    /// The container whose end stops the stream.
    pub container_id: String,
}

/// How often a followed log is polled for new data and the container's state.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

async fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        let mut data = Vec::new();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(f).read_to_end(&mut data)?;
        } else {
            std::io::BufReader::new(f).read_to_end(&mut data)?;
        }
        Ok(data)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn inode(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

/// Streams the log of `files` to `tx` as `opts` asks; with `follow`, keeps reading the live
/// file (across rotations) until the container exits or the receiver goes away.
pub async fn stream_logs(
    files: LogFiles,
    opts: LogOptions,
    follow: Option<FollowTarget>,
    tx: mpsc::Sender<Bytes>,
) {
    let tail = opts
        .tail_lines
        .map(|n| (n, VecDeque::new(), Vec::<LogMessage>::new()));
    let follow = if opts.follow { follow } else { None };
    let mut p = Pipeline {
        emitter: Emitter {
            opts,
            tx,
            written: 0,
            line_start: true,
        },
        tail,
    };
    let mut msgs = Vec::new();
    for path in &files.rotated {
        let Ok(data) = read_whole(path).await else {
            continue;
        };
        let mut s = LineSplitter::default();
        s.feed(&data, &mut msgs);
        s.finish(&mut msgs);
        for m in msgs.drain(..) {
            if p.push(m).await == Flow::Stop {
                return;
            }
        }
    }
    let mut file = tokio::fs::File::open(&files.live).await.ok();
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut ended = false;
    loop {
        // Drain the open file to its current end.
        if let Some(f) = file.as_mut() {
            loop {
                match f.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        splitter.feed(&buf[..n], &mut msgs);
                        for m in msgs.drain(..) {
                            if p.push(m).await == Flow::Stop {
                                return;
                            }
                        }
                    }
                }
            }
        }
        if p.end_tail().await == Flow::Stop {
            return;
        }
        let Some(target) = follow.as_ref() else {
            return;
        };
        if ended {
            return;
        }
        if p.emitter.tx.is_closed() {
            return;
        }
        // The file at the live path changed (rotated, or created): finish ours, then switch.
        let current = tokio::fs::metadata(&files.live)
            .await
            .ok()
            .map(|m| inode(&m));
        let ours = match file.as_ref() {
            Some(f) => f.metadata().await.ok().map(|m| inode(&m)),
            None => None,
        };
        if current.is_some() && current != ours {
            splitter.finish(&mut msgs);
            for m in msgs.drain(..) {
                if p.push(m).await == Flow::Stop {
                    return;
                }
            }
            splitter = LineSplitter::default();
            file = tokio::fs::File::open(&files.live).await.ok();
            if let Some(f) = file.as_mut() {
                let _ = f.seek(std::io::SeekFrom::Start(0)).await;
            }
            continue;
        }
        match target.runtime.container_status(&target.container_id).await {
            Ok(s)
                if matches!(
                    s.container.state,
                    ContainerState::Running | ContainerState::Created
                ) =>
            {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            // Exited, unknown or gone: one last read picks up what it wrote before ending.
            _ => ended = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cri_lines() {
        let m = parse_line(b"2026-11-22T03:50:01.123456789Z stdout F hello world").unwrap();
        assert_eq!(m.timestamp, ts("2026-11-22T03:50:01.123456789Z"));
        assert_eq!(m.stream, LogStream::Stdout);
        assert!(!m.partial);
        assert_eq!(&m.content[..], b"hello world");
        let m = parse_line(b"2026-11-22T04:50:01.5+01:00 stderr P part").unwrap();
        assert!(m.partial);
        assert_eq!(m.timestamp, ts("2026-11-22T03:50:01.5Z"));
        assert_eq!(
            &parse_line(b"2026-11-22T03:50:01Z stdout F")
                .unwrap()
                .content[..],
            b""
        );
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"2026-11-22T03:50:01Z stdin F x").is_none());
    }

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(
            format_rfc3339_nano(ts("2026-11-22T03:50:01.123456789Z")),
            "2026-11-22T03:50:01.123456789Z"
        );
        assert_eq!(
            format_rfc3339_nano(ts("2026-11-22T03:50:01.1200Z")),
            "2026-11-22T03:50:01.12Z"
        );
        assert_eq!(
            format_rfc3339_nano(ts("2026-11-22T03:50:01Z")),
            "2026-11-22T03:50:01Z"
        );
    }

    #[test]
    fn query_parsing() {
        let o = LogOptions::from_query(Some(
            "follow=true&timestamps=1&tailLines=5&limitBytes=10&sinceTime=2026-01-01T00:00:00Z&stream=Stderr",
        ))
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since, Some(ts("2026-01-01T00:00:00Z")));
        assert_eq!(o.stream, Some(LogStream::Stderr));
        assert_eq!(
            LogOptions::from_query(Some("tailLines=-1"))
                .unwrap()
                .tail_lines,
            None
        );
        assert!(LogOptions::from_query(Some("sinceSeconds=0")).is_err());
        assert!(LogOptions::from_query(Some("follow=maybe")).is_err());
        let o = LogOptions::from_query(Some("sinceSeconds=60")).unwrap();
        assert!(o.since.unwrap() < Timestamp::now());
    }

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Dir {
            Dir(tempfile::tempdir().unwrap())
        }
        fn write(&self, name: &str, lines: &[&str]) {
            let mut s = lines.join("\n");
            s.push('\n');
            std::fs::write(self.0.path().join(name), s).unwrap();
        }
        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    async fn collect(files: LogFiles, opts: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(1024);
        stream_logs(files, opts, None, tx).await;
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    fn sample() -> Dir {
        let d = Dir::new();
        d.write(
            "0.log",
            &[
                "2026-01-01T00:00:00Z stdout F old-one",
                "2026-01-01T00:00:01Z stdout F old-two",
            ],
        );
        d.write(
            "1.log.20260101-000010",
            &["2026-01-01T00:00:10Z stdout F rotated"],
        );
        d.write(
            "1.log",
            &[
                "2026-01-01T00:00:20Z stdout F first",
                "2026-01-01T00:00:21Z stderr P par",
                "2026-01-01T00:00:21.5Z stderr F tial",
                "2026-01-01T00:00:22.25Z stdout F last",
            ],
        );
        d
    }

    #[tokio::test]
    async fn reads_rotated_then_live_and_joins_partials() {
        let d = sample();
        let files = log_files(d.path(), "c", "p", false).unwrap().unwrap();
        assert_eq!(files.rotated.len(), 1);
        let out = collect(files, LogOptions::default()).await;
        assert_eq!(out, "rotated\nfirst\npartial\nlast\n");
    }

    #[tokio::test]
    async fn previous_attempt_and_its_absence() {
        let d = sample();
        let files = log_files(d.path(), "c", "p", true).unwrap().unwrap();
        assert_eq!(
            collect(files, LogOptions::default()).await,
            "old-one\nold-two\n"
        );
        let only = Dir::new();
        only.write("0.log", &["2026-01-01T00:00:00Z stdout F x"]);
        let err = log_files(only.path(), "web", "web-0", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "previous terminated container \"web\" in pod \"web-0\" not found"
        );
        assert!(
            log_files(&only.path().join("none"), "c", "p", false)
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn tail_since_timestamps_limit_and_stream() {
        let d = sample();
        let files = log_files(d.path(), "c", "p", false).unwrap().unwrap();
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(collect(files.clone(), tail).await, "partial\nlast\n");
        let since = LogOptions {
            since: Some(ts("2026-01-01T00:00:21Z")),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            collect(files.clone(), since).await,
            "2026-01-01T00:00:21Z partial\n2026-01-01T00:00:22.25Z last\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(10),
            ..Default::default()
        };
        assert_eq!(collect(files.clone(), limit).await, "rotated\nfi");
        let stderr = LogOptions {
            stream: Some(LogStream::Stderr),
            ..Default::default()
        };
        assert_eq!(collect(files.clone(), stderr).await, "partial\n");
        let zero = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(collect(files, zero).await, "");
    }

    #[tokio::test]
    async fn gzipped_rotations_are_read() {
        use std::io::Write;
        let d = Dir::new();
        let f = std::fs::File::create(d.path().join("0.log.20260101-000000.gz")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        gz.write_all(b"2026-01-01T00:00:00Z stdout F zipped\n")
            .unwrap();
        gz.finish().unwrap();
        d.write(
            "0.log.20260101-000005",
            &["2026-01-01T00:00:05Z stdout F plain"],
        );
        d.write("0.log", &["2026-01-01T00:00:09Z stdout F live"]);
        let files = log_files(d.path(), "c", "p", false).unwrap().unwrap();
        assert_eq!(
            collect(files, LogOptions::default()).await,
            "zipped\nplain\nlive\n"
        );
    }
}
