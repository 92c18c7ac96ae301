//! The smallest pod network: loopback only (no IPs). Useful for host-local pods and tests;
//! the real CNI-like network lives elsewhere.

use std::net::IpAddr;
use std::path::Path;

use rkube_cri::{PodNetwork, PodSandboxMetadata, Result};

/// Brings `lo` up in the pod's network namespace and returns no IPs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopbackNetwork;

impl PodNetwork for LoopbackNetwork {
    fn setup(
        &self,
        _pod: &PodSandboxMetadata,
        _sandbox_id: &str,
        netns: &Path,
    ) -> Result<Vec<IpAddr>> {
        crate::netns::in_netns(netns, loopback_up)?;
        Ok(Vec::new())
    }

    fn teardown(
        &self,
        _pod: &PodSandboxMetadata,
        _sandbox_id: &str,
        _netns: Option<&Path>,
    ) -> Result<()> {
        Ok(())
    }
}

/// `ip link set lo up` with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.
pub(crate) fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a datagram socket and ifreq ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(sock);
        if rc != 0 {
            return Err(std::io::Error::new(
                err.kind(),
                format!("bringing up lo: {err}"),
            ));
        }
    }
    Ok(())
}
