//! Node IPAM (upstream's `--allocate-node-cidrs` range allocator): each node gets a /24 of
//! the cluster CIDR as `spec.podCIDR`/`spec.podCIDRs`, from which its pods get their IPs. A
//! CIDR is free again once its node is gone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;

/// Size of each node's block, as upstream's default `--node-cidr-mask-size` for IPv4.
const NODE_MASK: u8 = 24;

/// An IPv4 CIDR split into per-node blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr {
    base: u32,
    prefix: u8,
}

impl ClusterCidr {
    /// Parses `10.42.0.0/16`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| format!("cluster CIDR {s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("cluster CIDR {s:?}: only IPv4 is supported"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= NODE_MASK)
            .ok_or_else(|| {
                format!("cluster CIDR {s:?}: the prefix must be at most /{NODE_MASK}")
            })?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(ClusterCidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// How many node blocks it holds.
    pub fn blocks(&self) -> u32 {
        1 << (NODE_MASK - self.prefix)
    }

    /// Block `i` as `a.b.c.d/24`.
    pub fn block(&self, i: u32) -> String {
        format!(
            "{}/{NODE_MASK}",
            Ipv4Addr::from(self.base + (i << (32 - NODE_MASK)))
        )
    }

    /// The index of a block, if it is one of this CIDR's.
    pub fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len != NODE_MASK.to_string() {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.base)? >> (32 - NODE_MASK);
        (offset < self.blocks()).then_some(offset)
    }
}

struct Ctx {
    client: Client,
    cidr: ClusterCidr,
    nodes: Store<Node>,
    // Blocks handed out but maybe not yet visible in the node cache.
    pending: Mutex<BTreeSet<u32>>,
}

/// Runs the allocator until the process ends; does nothing without a cluster CIDR.
pub async fn run_if_configured(client: Client, cidr: Option<ClusterCidr>) {
    if let Some(cidr) = cidr {
        run(client, cidr).await
    }
}

/// Runs the allocator until the process ends.
pub async fn run(client: Client, cidr: ClusterCidr) {
    let nodes: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(nodes, watcher::Config::default());
    let store = controller.store();
    controller
        .run(
            reconcile,
            error_policy,
            Arc::new(Ctx {
                client,
                cidr,
                nodes: store,
                pending: Mutex::default(),
            }),
        )
        .for_each(|_| async {})
        .await;
}

fn error_policy(_node: Arc<Node>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("node-ipam: {err}");
    Action::requeue(Duration::from_secs(2))
}

/// Why a node could not get a CIDR.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused the patch.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Every block is taken.
    #[error("no remaining CIDRs in the cluster CIDR for node {0}")]
    Exhausted(String),
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some_and(|c| !c.is_empty());
    if has_cidr || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.metadata.name.clone().unwrap_or_default();
    let block = {
        let mut pending = ctx.pending.lock().expect("node-ipam lock");
        let used: BTreeSet<u32> = ctx
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
            .filter_map(|c| ctx.cidr.index_of(c))
            .collect();
        pending.retain(|b| !used.contains(b));
        let free = (0..ctx.cidr.blocks())
            .find(|b| !used.contains(b) && !pending.contains(b))
            .ok_or_else(|| Error::Exhausted(name.clone()))?;
        pending.insert(free);
        free
    };
    let cidr = ctx.cidr.block(block);
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_a_slash_16() {
        let c = ClusterCidr::parse("10.42.0.0/16").unwrap();
        assert_eq!(c.blocks(), 256);
        assert_eq!(c.block(0), "10.42.0.0/24");
        assert_eq!(c.block(5), "10.42.5.0/24");
        assert_eq!(c.index_of("10.42.5.0/24"), Some(5));
        assert_eq!(c.index_of("10.43.0.0/24"), None);
        assert!(ClusterCidr::parse("10.42.0.0/25").is_err());
        assert!(ClusterCidr::parse("nope").is_err());
    }
}
