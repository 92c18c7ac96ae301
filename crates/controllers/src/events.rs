//! Recording events (`core/v1` Event) on behalf of a controller, as upstream's event recorder
//! does: what `kubectl describe` shows under "Events".

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Emits events as one component.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
}

impl Recorder {
    /// A recorder for `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.into(),
        }
    }

    /// Records a `Normal` (or `Warning`) event about `object`. Failures are logged, never
    /// returned: an event is never worth failing a reconcile for.
    pub async fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Time(jiff::Timestamp::now());
        let name = format!(
            "{}.{:x}",
            object.name.clone().unwrap_or_default(),
            jiff::Timestamp::now().as_nanosecond() as u64
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!("recording event {reason}: {e}");
        }
    }
}
