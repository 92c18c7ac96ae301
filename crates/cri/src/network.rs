//! The pod network seam (the role CNI plays for containerd): a runtime calls it when a
//! sandbox's network namespace exists and before it is destroyed.

use std::net::IpAddr;
use std::path::Path;

use crate::{PodSandboxMetadata, Result};

/// Sets up and tears down a pod's network inside its network namespace.
pub trait PodNetwork: Send + Sync {
    /// Configures the namespace at `netns` (loopback up at least) and returns the pod's IPs,
    /// primary first.
    fn setup(
        &self,
        pod: &PodSandboxMetadata,
        sandbox_id: &str,
        netns: &Path,
    ) -> Result<Vec<IpAddr>>;
    /// Releases what `setup` took (IPs, links). Must be idempotent: it is called again after
    /// a crash.
    fn teardown(
        &self,
        pod: &PodSandboxMetadata,
        sandbox_id: &str,
        netns: Option<&Path>,
    ) -> Result<()>;
}
