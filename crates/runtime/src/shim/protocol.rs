//! The shim's protocol on `<sandbox>/shim.sock`: one JSON request line per connection, one
//! JSON response line back, file descriptors (pipes, pty masters) attached to the response
//! with SCM_RIGHTS so streams never pass through the shim. Exec and wait keep the
//! connection open and send a second line (the exit code) when the process ends.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize};

/// A request to the shim.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Liveness check.
    Ping,
    /// Start a created container (its spec.json is in its dir).
    Start { id: String },
    /// Signal the main process (`all`: every process of the container).
    Kill { id: String, signal: i32, all: bool },
    /// Reply when the container has exited.
    Wait { id: String },
    /// Run a process in the container; fds come back in `fds` order.
    Exec {
        id: String,
        args: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Connect to the main process's streams.
    Attach {
        id: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Reopen the container's log file.
    ReopenLog { id: String },
    /// Forget an exited container.
    Remove { id: String },
    /// Kill everything and exit.
    Shutdown,
}

/// The shim's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Response {
    /// Error text, if the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is the container's fault (bad command…), not the runtime's.
    #[serde(default)]
    pub container_error: bool,
    /// A PID (start, exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// An exit code (wait, exec's second line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Names of the attached fds, in order (`stdin`, `stdout`, `stderr`, `pty`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<String>,
}

impl Response {
    pub fn err(msg: impl Into<String>) -> Response {
        Response {
            error: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// Sends one JSON line with fds attached.
pub(crate) fn send<T: Serialize>(sock: &UnixStream, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
    line.push(b'\n');
    if fds.is_empty() {
        return (&*sock).write_all(&line);
    }
    let iov = [IoSlice::new(&line)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let n = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(io::Error::from)?;
    if n < line.len() {
        (&*sock).write_all(&line[n..])?;
    }
    Ok(())
}

/// A client or server end of a shim connection: a socket plus bytes read past the last
/// line (a reply and the exit line of an exec can arrive in one read).
pub(crate) struct Conn {
    pub stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: UnixStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads one JSON line and any fds attached to its first bytes.
    pub fn recv<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<(T, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        if !self.buf.contains(&b'\n') {
            let mut buf = vec![0u8; 8192];
            let mut cmsg_space = nix::cmsg_space!([RawFd; 8]);
            let n = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = recvmsg::<()>(
                    self.stream.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg_space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: the kernel just installed these fds for us.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { crate::container::spawn::owned(fd) }),
                        );
                    }
                }
                msg.bytes
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the shim connection was closed",
                ));
            }
            self.buf.extend_from_slice(&buf[..n]);
        }
        let line = self.read_line()?;
        let v = serde_json::from_slice(&line)
            .map_err(|e| io::Error::other(format!("bad shim message: {e}")))?;
        Ok((v, fds))
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(nl + 1);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            let mut more = [0u8; 4096];
            let m = (&self.stream).read(&mut more)?;
            if m == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the shim connection was closed",
                ));
            }
            self.buf.extend_from_slice(&more[..m]);
        }
    }

    /// The socket and the bytes already read past the last line, for a caller that reads
    /// the rest asynchronously ([`crate::exec::recv_exit`]).
    pub fn into_parts(self) -> (UnixStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// Reads a plain JSON line (no fds), e.g. the second line of exec/wait.
    pub fn recv_line<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<T> {
        let line = self.read_line()?;
        serde_json::from_slice(&line)
            .map_err(|e| io::Error::other(format!("bad shim message: {e}")))
    }
}

/// Connects to a shim socket. Socket paths are limited to 108 bytes, so long paths go
/// through `/proc/self/fd/<dir>/shim.sock`.
pub(crate) fn connect(sock: &Path) -> io::Result<UnixStream> {
    if sock.as_os_str().len() < 100 {
        return UnixStream::connect(sock);
    }
    let dir = sock
        .parent()
        .ok_or_else(|| io::Error::other("socket path has no parent"))?;
    let name = sock
        .file_name()
        .ok_or_else(|| io::Error::other("socket path has no name"))?;
    let d = std::fs::File::open(dir)?;
    UnixStream::connect(Path::new(&format!("/proc/self/fd/{}", d.as_raw_fd())).join(name))
}

/// One request/response exchange; returns the connection for follow-up lines.
pub(crate) fn call(
    sock: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> io::Result<(Response, Vec<OwnedFd>, Conn)> {
    let s = connect(sock)?;
    s.set_read_timeout(timeout)?;
    send(&s, req, &[])?;
    let mut conn = Conn::new(s);
    let (resp, fds) = conn.recv::<Response>()?;
    Ok((resp, fds, conn))
}
