//! Running code inside a pod's network namespace: a short-lived thread `setns`es into it, so
//! the caller's own threads never change namespace.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Runs `f` on a new thread that has joined the network namespace at `netns`.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let netns: PathBuf = netns.to_path_buf();
    std::thread::Builder::new()
        .name("rkube-netns".into())
        .spawn(move || {
            let fd = std::fs::File::open(&netns)
                .map(OwnedFd::from)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("opening network namespace {}: {e}", netns.display()),
                    )
                })?;
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                io::Error::other(format!(
                    "joining network namespace {}: {e}",
                    netns.display()
                ))
            })?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

/// A TCP connection to 127.0.0.1:`port` made inside the namespace at `netns` (the socket
/// keeps its namespace after the thread leaves).
pub(crate) fn connect_loopback(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    in_netns(netns, move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
    })
}
