//! Events about pods, as upstream's kubelet records them (`source.component: kubelet`,
//! `source.host: <node>`), written through the recorder every component shares
//! (`rkube-events`: repeats counted as `BackOff (x7 over 4m)`, similar events combined, spam
//! limited).
//!
//! Recording never blocks a pod worker: events go through a channel (which tests read
//! directly) to one writer task.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;
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

/// Hands each recorded event to the shared recorder, as node `node`.
async fn write_events(
    client: Client,
    node: String,
    mut rx: mpsc::UnboundedReceiver<RecordedEvent>,
) {
    let recorder = rkube_events::Recorder::on_node(client, "kubelet", &node);
    while let Some(ev) = rx.recv().await {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(ev.namespace),
            name: Some(ev.name),
            uid: Some(ev.uid),
            field_path: ev.field_path,
            ..Default::default()
        };
        recorder
            .record(&object, &ev.type_, &ev.reason, &ev.message)
            .await;
    }
}
