//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, and
//! gets it back if it is deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = "default";

struct Ctx {
    client: Client,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        // A deleted `default` account sends its namespace back through reconcile.
        .watches(accounts, watcher::Config::default(), |sa| {
            sa.metadata
                .namespace
                .map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ns: Arc<Namespace>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("serviceaccount controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    if api.get_opt(DEFAULT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        // Already there (a race with another writer), or the namespace started terminating.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}
