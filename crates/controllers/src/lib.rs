//! rkube-controllers: the kube-controller-manager.
//!
//! Each controller is a module with one level-triggered `reconcile` function on a kube-rs
//! `Controller`: it reads and writes only through the API (a `kube::Client`), so it runs the
//! same inside `rkube server` (over the in-process service) and as a separate process.

pub mod controllerrevision;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod garbagecollector;
/// The event recorder, shared with the scheduler (crate `rkube-events`).
pub use rkube_events as events;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod statefulset;

use kube::Client;

/// Errors of one reconcile, shared by the workload controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// The object's selector is unusable.
    #[error("invalid selector: {0}")]
    Selector(String),
}

/// Settings of the controller manager.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Node lifecycle settings (lease grace period).
    pub node_lifecycle: nodelifecycle::Options,
    /// Event TTL and pod garbage collection settings.
    pub podgc: podgc::Options,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every namespace; no publisher
    /// runs when empty.
    pub root_ca_pem: String,
    /// The cluster CIDR nodes get their pod CIDRs from; no allocation when `None`.
    pub cluster_cidr: Option<nodeipam::ClusterCidr>,
}

/// Runs every controller until the process ends.
pub async fn run_all(client: Client, options: Options) {
    tokio::join!(
        nodelifecycle::run(client.clone(), options.node_lifecycle),
        podgc::run(client.clone(), options.podgc),
        namespace::run(client.clone()),
        garbagecollector::run(client.clone()),
        serviceaccount::run(client.clone()),
        nodeipam::run_if_configured(client.clone(), options.cluster_cidr),
        rootcacertpublisher::run_if_configured(client.clone(), options.root_ca_pem),
        replicaset::run(client.clone()),
        disruption::run(client.clone()),
        job::run(client.clone()),
        cronjob::run(client.clone()),
        deployment::run(client.clone()),
        daemonset::run(client.clone()),
        statefulset::run(client),
    );
}
