//! Running code inside a pod's network namespace, with `rkube_net`'s helper (a short-lived
//! thread `setns`es into it, so the caller's own threads never change namespace).

use std::io;
use std::path::Path;

/// A TCP connection to 127.0.0.1:`port` made inside the namespace at `netns` (the socket
/// keeps its namespace after the thread leaves).
pub(crate) fn connect_loopback(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    rkube_net::netlink::in_netns(netns, || std::net::TcpStream::connect(("127.0.0.1", port)))
}
