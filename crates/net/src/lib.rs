//! Pod networking. Today a pod's network namespace has loopback only, but it already gets its
//! own IP from the node's pod CIDR (held on `lo`), so the pod IP field, the IPAM and the plugin
//! seam (`rkube_cri::PodNetwork`) are the ones the bridge/veth network will use.

#![warn(missing_docs)]

pub mod ipam;
pub mod netlink;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rkube_cri::{Error, PodNetwork, PodSandboxMetadata, Result};

use ipam::{HostLocal, Ipv4Cidr};

/// How long `setup` waits for the node's pod CIDR to be known (the node IPAM controller
/// assigns it right after registration).
const CIDR_WAIT: Duration = Duration::from_secs(10);

/// The pod network: one IP per pod from the node's pod CIDR, configured on the pod's loopback.
pub struct LoopbackNetwork {
    dir: PathBuf,
    cidr: Mutex<Option<Ipv4Cidr>>,
    cidr_known: Condvar,
}

impl LoopbackNetwork {
    /// A network keeping its IPAM state in `dir` (e.g. `<data-dir>/agent/net`).
    pub fn new(dir: PathBuf) -> Self {
        LoopbackNetwork {
            dir,
            cidr: Mutex::new(None),
            cidr_known: Condvar::new(),
        }
    }

    /// Sets the node's pod CIDR (CRI's `UpdateRuntimeConfig`), e.g. `10.42.0.0/24`.
    pub fn set_pod_cidr(&self, cidr: &str) -> Result<()> {
        let parsed = Ipv4Cidr::parse(cidr).map_err(Error::Internal)?;
        *self.cidr.lock().expect("cidr lock") = Some(parsed);
        self.cidr_known.notify_all();
        Ok(())
    }

    fn ipam(&self) -> Result<HostLocal> {
        let guard = self.cidr.lock().expect("cidr lock");
        let (guard, _) = self
            .cidr_known
            .wait_timeout_while(guard, CIDR_WAIT, |c| c.is_none())
            .expect("cidr lock");
        let cidr = guard.ok_or_else(|| {
            Error::Internal(
                "the node has no pod CIDR yet (spec.podCIDR): is the controller manager running \
                 with a --cluster-cidr?"
                    .into(),
            )
        })?;
        Ok(HostLocal::new(self.dir.join("ipam"), cidr))
    }
}

impl PodNetwork for LoopbackNetwork {
    fn setup(
        &self,
        _pod: &PodSandboxMetadata,
        sandbox_id: &str,
        netns: &Path,
    ) -> Result<Vec<IpAddr>> {
        let ipam = self.ipam()?;
        let ip = ipam.allocate(sandbox_id)?;
        let configured = netlink::in_netns(netns, || {
            netlink::set_link_up(netlink::LOOPBACK_INDEX)?;
            netlink::add_address(netlink::LOOPBACK_INDEX, IpAddr::V4(ip), 32)
        });
        if let Err(e) = configured {
            let _ = ipam.release(sandbox_id);
            return Err(Error::Internal(format!(
                "configuring the pod network in {}: {e}",
                netns.display()
            )));
        }
        Ok(vec![IpAddr::V4(ip)])
    }

    fn teardown(
        &self,
        _pod: &PodSandboxMetadata,
        sandbox_id: &str,
        _netns: Option<&Path>,
    ) -> Result<()> {
        // The addresses go with the namespace; only the IPAM lease is ours to give back.
        if let Some(cidr) = *self.cidr.lock().expect("cidr lock") {
            HostLocal::new(self.dir.join("ipam"), cidr).release(sandbox_id)?;
        } else {
            ipam::release_anywhere(&self.dir.join("ipam"), sandbox_id)?;
        }
        Ok(())
    }
}
