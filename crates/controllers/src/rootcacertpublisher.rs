//! The root CA certificate publisher: every active namespace has a `kube-root-ca.crt`
//! ConfigMap holding the cluster CA (`ca.crt`), kept equal to it and recreated if deleted, so
//! pods can verify the apiserver (the projected service-account volume mounts it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// The ConfigMap's name, as upstream.
pub const NAME: &str = "kube-root-ca.crt";

struct Ctx {
    client: Client,
    ca_pem: String,
}

/// Runs the controller until the process ends; does nothing without a CA.
pub async fn run_if_configured(client: Client, ca_pem: String) {
    if !ca_pem.is_empty() {
        run(client, ca_pem).await
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: Client, ca_pem: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let maps: Api<ConfigMap> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(
            maps,
            watcher::Config::default().fields(&format!("metadata.name={NAME}")),
            |cm| {
                cm.metadata
                    .namespace
                    .map(|ns| ObjectRef::<Namespace>::new(&ns))
            },
        )
        .run(reconcile, error_policy, Arc::new(Ctx { client, ca_pem }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(_ns: Arc<Namespace>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("root-ca-cert-publisher: {err}");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let data = BTreeMap::from([("ca.crt".to_string(), ctx.ca_pem.clone())]);
    let result = match api.get_opt(NAME).await? {
        Some(cm) if cm.data.as_ref() == Some(&data) => return Ok(Action::await_change()),
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(NAME, &PostParams::default(), &cm).await
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/description".to_string(),
                        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // A race with another writer, or the namespace started terminating.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(e) => Err(e),
    }
}
