//! Events about pods, as upstream's kubelet records them (`source.component: kubelet`,
//! `source.host: <node>`), written through the recorder every component shares
//! (`rkube-events`: repeats counted as `BackOff (x7 over 4m)`, similar events combined, spam
//! limited).
//!
//! Recording never blocks a pod worker: events queue for the shared recorder's writer task
//! (tests read them from a channel instead).

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

/// Hands events to the shared recorder's writer (or to a test's receiver).
#[derive(Clone)]
pub struct Recorder {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    /// A test reads the events.
    Channel(mpsc::UnboundedSender<RecordedEvent>),
    /// Written as `v1 Event`s by `rkube-events`.
    Api(rkube_events::Recorder),
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match self.sink {
            Sink::Channel(_) => "channel",
            Sink::Api(_) => "api",
        };
        f.debug_struct("Recorder").field("sink", &sink).finish()
    }
}

impl Recorder {
    /// A recorder whose events land in the returned receiver (tests, or a custom writer).
    pub fn channel() -> (Recorder, mpsc::UnboundedReceiver<RecordedEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Recorder {
                sink: Sink::Channel(tx),
            },
            rx,
        )
    }

    /// A recorder writing `v1 Event`s through `client` as node `node`, from the shared
    /// recorder's background writer.
    pub fn for_node(client: Client, node: &str) -> Recorder {
        Recorder {
            sink: Sink::Api(rkube_events::Recorder::on_node(client, "kubelet", node)),
        }
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
        match &self.sink {
            Sink::Api(recorder) => {
                let object = ObjectReference {
                    field_path,
                    ..rkube_events::reference(pod)
                };
                let now = jiff::Timestamp::now();
                recorder.emit(recorder.event(&object, type_, reason, &message.into(), now));
            }
            Sink::Channel(tx) => {
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
                let _ = tx.send(ev);
            }
        }
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
