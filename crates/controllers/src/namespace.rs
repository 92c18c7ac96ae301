//! The namespace controller: empties a terminating namespace, then removes the `kubernetes`
//! finalizer through the `finalize` subresource so the apiserver can delete it.
//!
//! As upstream's, it finds what to delete through discovery (every namespaced resource that
//! supports `deletecollection`), so custom resources are cleaned up too.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

/// The finalizer the apiserver puts in every namespace's `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: Client,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("namespace controller: {e}");
            }
        })
        .await;
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("namespace controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let pending = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
    if ns.metadata.deletion_timestamp.is_none() || !pending {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let remaining = delete_contents(&ctx.client, &name).await?;
    if remaining > 0 {
        // Pods on nodes terminate gracefully; check again shortly.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut finalized = (*ns).clone();
    if let Some(f) = finalized.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    finalized.metadata.managed_fields = None;
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes everything in namespace `ns`; returns how many objects are still there.
async fn delete_contents(client: &Client, ns: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut remaining = 0;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::DELETE_COLLECTION)
                || !caps.supports_operation(verbs::LIST)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let left = api.list_metadata(&ListParams::default()).await?;
            if left.items.is_empty() {
                continue;
            }
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await?;
            remaining += api.list_metadata(&ListParams::default()).await?.items.len();
        }
    }
    Ok(remaining)
}
