//! rkube-controllers: the kube-controller-manager.
//!
//! Each controller is a module with one level-triggered `reconcile` function on a kube-rs
//! `Controller`: it reads and writes only through the API (a `kube::Client`), so it runs the
//! same inside `rkube server` (over the in-process service) and as a separate process.

pub mod deployment;
pub mod disruption;
pub mod events;
pub mod garbagecollector;
pub mod namespace;
pub mod pods;
pub mod replicaset;
pub mod serviceaccount;

use kube::Client;

/// Runs every controller until the process ends.
pub async fn run_all(client: Client) {
    tokio::join!(
        namespace::run(client.clone()),
        garbagecollector::run(client.clone()),
        serviceaccount::run(client.clone()),
        replicaset::run(client.clone()),
        disruption::run(client.clone()),
        deployment::run(client),
    );
}
