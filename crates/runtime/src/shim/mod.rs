//! The per-pod supervisor ("shim"): the roles of upstream's pause container and of
//! conmon/containerd-shim in one small process per pod, started by re-executing the current
//! binary with a hidden first argument.

pub(crate) mod protocol;
mod supervisor;

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Hidden first argument that turns the binary into a shim.
pub const SHIM_ARG: &str = "__rkube-shim";

/// If this process was started as a shim (`<exe> __rkube-shim <root> <sandbox-id>`), runs
/// the shim and exits; otherwise returns at once. Call it first thing in `main`, before any
/// thread (tokio included) is started: the shim forks and must be single-threaded.
pub fn run_shim_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(SHIM_ARG)) {
        return;
    }
    let (Some(root), Some(id)) = (args.next(), args.next()) else {
        eprintln!("usage: {SHIM_ARG} <runtime-root> <sandbox-id>");
        std::process::exit(2);
    };
    let code = supervisor::main(PathBuf::from(root), id.to_string_lossy().into_owned());
    std::process::exit(code);
}

/// How long a shim may take to hold the pod's namespaces and listen.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

fn read_until_eof(mut pipe: std::process::ChildStdout, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut buf = [0u8; 1024];
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
        if out.contains(&b'\n') {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts the shim of a sandbox whose `sandbox.json` is written, and waits until it holds
/// the pod's namespaces and listens. Returns its PID. Blocking.
pub(crate) fn launch(root: &Path, id: &str) -> Result<u32, String> {
    let mut child = Command::new("/proc/self/exe")
        .arg(SHIM_ARG)
        .arg(root)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the pod supervisor (/proc/self/exe {SHIM_ARG}): {e}"))?;
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        // EOF comes when the detached shim has reported and let go of the pipe.
        out = read_until_eof(o, LAUNCH_TIMEOUT);
    }
    let _ = child.wait();
    let line = out.lines().next().unwrap_or("");
    if let Some(pid) = line.strip_prefix("ready ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| format!("pod supervisor said {line:?}"));
    }
    if let Some(e) = line.strip_prefix("error ") {
        return Err(format!("pod supervisor failed: {e}"));
    }
    Err(format!(
        "pod supervisor exited without reporting (got {out:?}); a binary embedding rkube-runtime must call \
         rkube_runtime::run_shim_if_requested() first thing in main"
    ))
}
