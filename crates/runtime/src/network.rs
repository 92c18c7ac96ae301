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
        // One way to bring `lo` up for every pod network: rkube-net's rtnetlink request.
        rkube_net::netlink::in_netns(netns, || {
            rkube_net::netlink::set_link_up(rkube_net::netlink::LOOPBACK_INDEX)
        })
        .map_err(|e| {
            rkube_cri::Error::Internal(format!("bringing up lo in {}: {e}", netns.display()))
        })?;
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
