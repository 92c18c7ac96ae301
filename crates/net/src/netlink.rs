//! The few rtnetlink operations pod set-up needs, spoken directly over a netlink socket (a
//! full netlink crate would be most of this crate's build time), and entering a network
//! namespace on a short-lived thread so the caller's thread never changes namespace.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `lo` is always interface 1 in a new network namespace.
pub const LOOPBACK_INDEX: u32 = 1;

/// Runs `f` on a thread that has joined the network namespace at `netns`; sockets it opens
/// belong to that namespace.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = std::fs::File::open(netns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening network namespace {}: {e}", netns.display()),
        )
    })?;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("rkube-netns".into())
            .spawn_scoped(s, || {
                // SAFETY: setns on a valid fd; it only changes this (scoped, short-lived) thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = io::Error::last_os_error();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("joining network namespace {}: {e}", netns.display()),
                    ));
                }
                f()
            })?
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
    })
}

/// Sets an interface up (`ip link set dev X up`).
pub fn set_link_up(index: u32) -> io::Result<()> {
    // struct ifinfomsg { family u8, pad u8, type u16, index i32, flags u32, change u32 }
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    body.extend_from_slice(&0u16.to_ne_bytes());
    body.extend_from_slice(&(index as i32).to_ne_bytes());
    body.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    body.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
    request(libc::RTM_NEWLINK, 0, &body)
}

/// Adds an address (`ip addr add IP/PREFIX dev X`); an existing identical address is fine.
pub fn add_address(index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
    let (family, bytes) = match ip {
        IpAddr::V4(v4) => (libc::AF_INET as u8, v4.octets().to_vec()),
        IpAddr::V6(v6) => (libc::AF_INET6 as u8, v6.octets().to_vec()),
    };
    // struct ifaddrmsg { family u8, prefixlen u8, flags u8, scope u8, index u32 }
    let mut body = vec![family, prefix, 0, libc::RT_SCOPE_UNIVERSE];
    body.extend_from_slice(&index.to_ne_bytes());
    for attr in [libc::IFA_LOCAL, libc::IFA_ADDRESS] {
        push_attr(&mut body, attr, &bytes);
    }
    match request(
        libc::RTM_NEWADDR,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        &body,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Sends one request with ACK and returns the kernel's verdict.
fn request(kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let len = 16 + body.len();
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    msg.extend_from_slice(body);
    // SAFETY: sending a buffer we own on our socket; the kernel is the default destination.
    let sent = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 1024];
    // SAFETY: receiving into a buffer we own.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // nlmsghdr (16 bytes) then nlmsgerr { error i32, … }: 0 is the ACK.
    if n as usize >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == libc::NLMSG_ERROR as u16 {
        let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(-errno));
        }
        return Ok(());
    }
    Err(io::Error::other("unexpected netlink reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (as CI runs tests): a fresh network namespace gets lo up and an address.
    #[test]
    fn loopback_up_with_an_address_in_a_new_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::thread::spawn(move || -> io::Result<String> {
            // SAFETY: unshare on this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            set_link_up(LOOPBACK_INDEX)?;
            add_address(LOOPBACK_INDEX, "10.42.9.2".parse().unwrap(), 32)?;
            add_address(LOOPBACK_INDEX, "10.42.9.2".parse().unwrap(), 32)?;
            // A socket bound to the pod IP proves the address is there and lo is up.
            let l = std::net::TcpListener::bind("10.42.9.2:0")?;
            let addr = l.local_addr()?;
            std::net::TcpStream::connect(addr)?;
            let _ = dir;
            Ok(addr.ip().to_string())
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(out, "10.42.9.2");
    }
}
