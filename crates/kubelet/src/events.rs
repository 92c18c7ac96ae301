//! Events about pods, as upstream's kubelet records them (`source.component: kubelet`,
//! `source.host: <node>`), with count aggregation for repeats (`BackOff (x7 over 4m)`).
//!
//! Recording never blocks a pod worker: events go through a channel to one writer task.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

/// `type: Normal`.
pub const NORMAL: &str = "Normal";
/// `type: Warning`.
pub const WARNING: &str = "Warning";

/// One event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// `spec.containers{web}` when about a container.
    pub field_path: Option<String>,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// Reason (`Pulling`, `BackOff`…).
    pub reason: String,
    /// Message.
    pub message: String,
}

/// Hands events to the writer task (or to a test's receiver).
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<RecordedEvent>,
}

impl Recorder {
    /// A recorder whose events land in the returned receiver (tests, or a custom writer).
    pub fn channel() -> (Recorder, mpsc::UnboundedReceiver<RecordedEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, rx)
    }

    /// A recorder writing `v1 Event`s through `client` from a background task.
    pub fn spawn(client: Client, node: String) -> Recorder {
        let (rec, rx) = Recorder::channel();
        tokio::spawn(write_events(client, node, rx));
        rec
    }

    /// Records an event about `pod` (about one of its containers when `field_path` is set).
    pub fn pod_event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: &str,
        reason: &str,
        message: impl Into<String>,
    ) {
        let ev = RecordedEvent {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            field_path,
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.into(),
        };
        // The receiver only goes away at shutdown; a lost event then does not matter.
        let _ = self.tx.send(ev);
    }
}

/// The `fieldPath` of a container (`spec.containers{web}` / `spec.initContainers{init}`).
pub fn container_field_path(pod: &Pod, container: &str) -> String {
    let is_init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|ics| ics.iter().any(|c| c.name == container));
    if is_init {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    }
}

fn now_seconds() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// (namespace, uid, fieldPath, reason, message) of an event, for count aggregation.
type EventKey = (String, String, Option<String>, String, String);

async fn write_events(
    client: Client,
    node: String,
    mut rx: mpsc::UnboundedReceiver<RecordedEvent>,
) {
    // (namespace, uid, fieldPath, reason, message) → (event name, count, first timestamp).
    let mut seen: HashMap<EventKey, (String, i32)> = HashMap::new();
    while let Some(ev) = rx.recv().await {
        let api: Api<Event> = Api::namespaced(client.clone(), &ev.namespace);
        let key = (
            ev.namespace.clone(),
            ev.uid.clone(),
            ev.field_path.clone(),
            ev.reason.clone(),
            ev.message.clone(),
        );
        let now = now_seconds();
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": now});
            if api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                continue;
            }
            // The event expired (TTL) or was deleted: write a fresh one below.
            seen.remove(&key);
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let name = format!("{}.{:x}", ev.name, nanos);
        let mut involved = json!({
            "apiVersion": "v1", "kind": "Pod", "namespace": ev.namespace,
            "name": ev.name, "uid": ev.uid,
        });
        if let Some(fp) = &ev.field_path {
            involved["fieldPath"] = json!(fp);
        }
        let body = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ev.namespace},
            "involvedObject": involved,
            "reason": ev.reason, "message": ev.message, "type": ev.type_,
            "source": {"component": "kubelet", "host": node},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": null,
            "reportingComponent": "kubelet", "reportingInstance": node,
        });
        match serde_json::from_value::<Event>(body) {
            Ok(event) => match api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    if seen.len() > 4096 {
                        seen.clear();
                    }
                    seen.insert(key, (name, 1));
                }
                Err(e) => tracing::debug!(error = %e, reason = %ev.reason, "event not recorded"),
            },
            Err(e) => tracing::warn!(error = %e, "event not built"),
        }
    }
}
