//! Recording events (`core/v1` Event) on behalf of a component (the controllers, the
//! scheduler), as upstream's event recorder does: what `kubectl describe` shows under "Events".
//!
//! Every event goes through a [`Correlator`] first, upstream's `EventCorrelator`:
//! - an event seen before (same source, involved object, type, reason and message) patches
//!   the existing Event (`count` + 1, `lastTimestamp`) instead of creating another;
//! - once 10 events with the same source, object, type and reason but different messages
//!   arrive within 10 minutes, the rest are folded into one Event whose message starts with
//!   `(combined from similar events): `;
//! - a token bucket per source and object (burst 25, one token back every 5 minutes) drops
//!   what exceeds it, so one object cannot flood the Event store.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Entries each correlator cache keeps (upstream's `maxLruCacheEntries`).
const CACHE_ENTRIES: usize = 4096;
/// Distinct messages of similar events before they are combined (upstream's
/// `defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// Window within which similar events are counted (upstream's
/// `defaultAggregateIntervalInSeconds`).
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
/// Events a source may emit about one object in a burst (upstream's `defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;
/// Tokens per second the spam filter refills: one every 5 minutes (`defaultSpamQPS`).
const SPAM_QPS: f64 = 1.0 / 300.0;
/// Prefix of a combined event's message.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// A map bounded to `cap` entries that forgets the least recently used one.
#[derive(Debug)]
struct Lru<V> {
    map: HashMap<String, (V, u64)>,
    tick: u64,
    cap: usize,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Lru {
            map: HashMap::new(),
            tick: 0,
            cap,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(v, t)| {
            *t = tick;
            v
        })
    }

    fn insert(&mut self, key: String, v: V) {
        self.tick += 1;
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            let oldest = self.map.iter().min_by_key(|(_, (_, t))| *t);
            if let Some(k) = oldest.map(|(k, _)| k.clone()) {
                self.map.remove(&k);
            }
        }
        self.map.insert(key, (v, self.tick));
    }
}

/// Similar events (same aggregate key) seen in the current window.
#[derive(Debug)]
struct AggregateRecord {
    messages: BTreeSet<String>,
    last: jiff::Timestamp,
}

/// What is known about an Event already written.
#[derive(Debug, Clone)]
struct EventLog {
    count: i32,
    first: Option<Time>,
    name: String,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: jiff::Timestamp,
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Drop it (spam filter).
    Skip,
    /// Create this Event.
    Create(Event),
    /// Merge-patch the existing Event `name` with `patch`; `event` is the full Event, to
    /// create should the existing one be gone (expired).
    Patch {
        /// Name of the existing Event.
        name: String,
        /// The merge patch (`count`, `lastTimestamp`, `message`).
        patch: Value,
        /// The whole Event after the patch.
        event: Event,
    },
}

/// Upstream's EventCorrelator as a pure state machine: feed it events with the current
/// time, carry out its [`Decision`]s, and report written Events back with [`Self::written`].
#[derive(Debug)]
pub struct Correlator {
    aggregates: Lru<AggregateRecord>,
    logs: Lru<EventLog>,
    spam: Lru<Bucket>,
}

impl Default for Correlator {
    fn default() -> Self {
        Correlator {
            aggregates: Lru::new(CACHE_ENTRIES),
            logs: Lru::new(CACHE_ENTRIES),
            spam: Lru::new(CACHE_ENTRIES),
        }
    }
}

fn source_parts(e: &Event) -> [String; 2] {
    let s = e.source.clone().unwrap_or_default();
    [s.component.unwrap_or_default(), s.host.unwrap_or_default()]
}

fn object_parts(e: &Event) -> [String; 5] {
    let o = &e.involved_object;
    [
        o.kind.clone().unwrap_or_default(),
        o.namespace.clone().unwrap_or_default(),
        o.name.clone().unwrap_or_default(),
        o.uid.clone().unwrap_or_default(),
        o.api_version.clone().unwrap_or_default(),
    ]
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// The key of identical events (upstream's `getEventKey`).
pub fn event_key(e: &Event) -> String {
    let mut parts: Vec<String> = source_parts(e).into();
    parts.extend(object_parts(e));
    parts.push(text(&e.involved_object.field_path));
    parts.extend([text(&e.type_), text(&e.reason), text(&e.message)]);
    parts.join("\u{0}")
}

/// The key of similar events, equal but for the message (upstream's
/// `EventAggregatorByReasonFunc`).
pub fn aggregate_key(e: &Event) -> String {
    let mut parts: Vec<String> = source_parts(e).into();
    parts.extend(object_parts(e));
    parts.extend([
        text(&e.type_),
        text(&e.reason),
        text(&e.reporting_component),
        text(&e.reporting_instance),
    ]);
    parts.join("\u{0}")
}

/// The spam filter's key: source and involved object (upstream's `getSpamKey`).
pub fn spam_key(e: &Event) -> String {
    let mut parts: Vec<String> = source_parts(e).into();
    parts.extend(object_parts(e));
    parts.join("\u{0}")
}

/// An Event name as upstream's recorder makes them: `<object>.<nanoseconds in hex>`.
pub fn event_name(object: &str, now: jiff::Timestamp) -> String {
    format!("{object}.{:x}", now.as_nanosecond() as u64)
}

impl Correlator {
    /// Decides what to do with `event` at `now`; the returned key identifies it for
    /// [`Self::written`].
    pub fn correlate(&mut self, event: &Event, now: jiff::Timestamp) -> (Decision, String) {
        let (event, key) = self.aggregate(event, now);
        let spam = spam_key(&event);
        let decision = self.observe(event, &key);
        // As upstream, the filter runs last: a dropped repeat still raises the count.
        if !self.accept(&spam, now) {
            return (Decision::Skip, key);
        }
        (decision, key)
    }

    /// Records what the API returned for the event correlated under `key`, so that the
    /// next identical event patches this one.
    pub fn written(&mut self, key: &str, event: &Event) {
        let log = EventLog {
            count: event.count.unwrap_or(1),
            first: event.first_timestamp.clone(),
            name: event.metadata.name.clone().unwrap_or_default(),
        };
        self.logs.insert(key.to_string(), log);
    }

    /// Upstream's `EventAggregate`: the event itself while fewer than 10 distinct messages
    /// of similar events were seen in the window, else a combined event under the
    /// aggregate key.
    fn aggregate(&mut self, event: &Event, now: jiff::Timestamp) -> (Event, String) {
        let akey = aggregate_key(event);
        let message = text(&event.message);
        let window = AGGREGATE_INTERVAL.as_secs_f64();
        let count = match self.aggregates.get_mut(&akey) {
            Some(r) if now.duration_since(r.last).as_secs_f64() <= window => {
                r.messages.insert(message.clone());
                r.last = now;
                r.messages.len()
            }
            _ => {
                let record = AggregateRecord {
                    messages: BTreeSet::from([message.clone()]),
                    last: now,
                };
                self.aggregates.insert(akey.clone(), record);
                1
            }
        };
        if count < AGGREGATE_MAX_EVENTS {
            return (event.clone(), event_key(event));
        }
        if let Some(r) = self.aggregates.get_mut(&akey) {
            // Do not let the message set grow past the limit.
            r.messages.remove(&message);
        }
        let at = Time(now);
        let object = event.involved_object.name.clone().unwrap_or_default();
        let combined = Event {
            metadata: ObjectMeta {
                name: Some(event_name(&object, now)),
                namespace: event.metadata.namespace.clone(),
                ..Default::default()
            },
            count: Some(1),
            first_timestamp: Some(at.clone()),
            last_timestamp: Some(at),
            message: Some(format!("{COMBINED_PREFIX}{message}")),
            involved_object: event.involved_object.clone(),
            type_: event.type_.clone(),
            reason: event.reason.clone(),
            source: event.source.clone(),
            reporting_component: event.reporting_component.clone(),
            reporting_instance: event.reporting_instance.clone(),
            ..Default::default()
        };
        (combined, akey)
    }

    /// Upstream's `eventObserve`: a known key becomes a patch of the Event written before.
    fn observe(&mut self, mut event: Event, key: &str) -> Decision {
        let Some(last) = self.logs.get_mut(key) else {
            let log = EventLog {
                count: event.count.unwrap_or(1),
                first: event.first_timestamp.clone(),
                name: event.metadata.name.clone().unwrap_or_default(),
            };
            self.logs.insert(key.to_string(), log);
            return Decision::Create(event);
        };
        last.count += 1;
        event.count = Some(last.count);
        event.first_timestamp = last.first.clone().or(event.first_timestamp);
        event.metadata.name = Some(last.name.clone());
        let patch = json!({
            "count": event.count,
            "lastTimestamp": event.last_timestamp,
            "message": event.message,
        });
        Decision::Patch {
            name: last.name.clone(),
            patch,
            event,
        }
    }

    /// Upstream's `EventSourceObjectSpamFilter`: one token per event.
    fn accept(&mut self, key: &str, now: jiff::Timestamp) -> bool {
        let bucket = match self.spam.get_mut(key) {
            Some(b) => b,
            None => {
                let fresh = Bucket {
                    tokens: SPAM_BURST,
                    at: now,
                };
                self.spam.insert(key.to_string(), fresh);
                match self.spam.get_mut(key) {
                    Some(b) => b,
                    None => return true,
                }
            }
        };
        let elapsed = now.duration_since(bucket.at).as_secs_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The reference an event about `obj` carries (upstream's `ref.GetReference`: kind,
/// apiVersion, namespace, name, uid and resourceVersion).
pub fn reference<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        resource_version: obj.meta().resource_version.clone(),
        ..obj.object_ref(&())
    }
}

/// Events waiting to be written, at most (upstream's `maxQueuedEvents`).
const MAX_QUEUED_EVENTS: usize = 1000;

/// Emits events as one component.
///
/// Like upstream's event broadcaster, recording never waits for the API: events queue for one
/// writer task per recorder, which correlates and writes them in order. A reconcile creating
/// 500 pods thus does not also wait for 500 event writes.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    /// The node a kubelet records from (`source.host`, `reportingInstance`).
    host: Option<String>,
    correlator: Arc<Mutex<Correlator>>,
    /// The writer's queue, started with the first event (a recorder may be made outside a
    /// runtime).
    queue: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<Event>>>,
}

impl Recorder {
    /// A recorder for `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.into(),
            host: None,
            correlator: Arc::default(),
            queue: Arc::default(),
        }
    }

    /// A recorder for `component` running on node `host` (the kubelet's events name the node
    /// in `source.host` and `reportingInstance`).
    pub fn on_node(client: Client, component: &str, host: &str) -> Self {
        Recorder {
            host: Some(host.into()),
            ..Recorder::new(client, component)
        }
    }

    /// The Event this recorder would create for `object` at `now`, before correlation.
    pub fn event(
        &self,
        object: &ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
        now: jiff::Timestamp,
    ) -> Event {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let at = Time(now);
        Event {
            metadata: ObjectMeta {
                name: Some(event_name(object.name.as_deref().unwrap_or_default(), now)),
                namespace: Some(ns),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(at.clone()),
            last_timestamp: Some(at),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        }
    }

    /// Records a `Normal` (or `Warning`) event about `object`. Failures are logged, never
    /// returned: an event is never worth failing a reconcile for.
    pub async fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        self.emit(self.event(object, type_, reason, message, jiff::Timestamp::now()));
    }

    /// Queues an event made by [`Recorder::event`] (and perhaps completed, e.g. with an
    /// `action`) for the writer; never waits.
    pub fn emit(&self, event: Event) {
        let queue = self.queue.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel(MAX_QUEUED_EVENTS);
            let writer = self.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    writer.write(event).await;
                }
            });
            tx
        });
        // Full: dropped, as upstream's broadcaster drops events beyond its queue.
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(e)) = queue.try_send(event) {
            tracing::debug!(
                "event queue full, dropping event {}",
                e.reason.unwrap_or_default()
            );
        }
    }

    /// Correlates `event` with those written before and creates or patches it.
    async fn write(&self, event: Event) {
        let now = jiff::Timestamp::now();
        let reason = event.reason.clone().unwrap_or_default();
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        let (decision, key) = match self.correlator.lock() {
            Ok(mut c) => c.correlate(&event, now),
            // A poisoned lock only loses correlation, never the event.
            Err(_) => (Decision::Create(event), String::new()),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams::default();
        let written = match decision {
            Decision::Skip => return,
            Decision::Create(e) => api.create(&pp, &e).await,
            Decision::Patch { name, patch, event } => {
                let patched = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                match patched {
                    // Expired (event TTL) or deleted meanwhile: write it anew.
                    Err(kube::Error::Api(e)) if e.code == 404 => api.create(&pp, &event).await,
                    other => other,
                }
            }
        };
        match written {
            Ok(e) => {
                if let Ok(mut c) = self.correlator.lock() {
                    c.written(&key, &e);
                }
            }
            Err(e) => tracing::debug!("recording event {reason}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, message: &str, object: &str, now: jiff::Timestamp) -> Event {
        let at = Time(now);
        Event {
            metadata: ObjectMeta {
                name: Some(event_name(object, now)),
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some(object.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{object}")),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            count: Some(1),
            first_timestamp: Some(at.clone()),
            last_timestamp: Some(at),
            source: Some(EventSource {
                component: Some("test-controller".into()),
                host: None,
            }),
            ..Default::default()
        }
    }

    fn t(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    /// Correlates and "writes" (as the API would return it), returning the decision.
    fn feed(c: &mut Correlator, e: &Event, now: jiff::Timestamp) -> Decision {
        let (d, key) = c.correlate(e, now);
        match &d {
            Decision::Create(e) | Decision::Patch { event: e, .. } => c.written(&key, e),
            Decision::Skip => {}
        }
        d
    }

    #[test]
    fn repeated_events_patch_the_first() {
        let mut c = Correlator::default();
        let first = feed(&mut c, &event("Pulled", "m", "p", t(0)), t(0));
        let Decision::Create(created) = first else {
            panic!("{first:?}")
        };
        let second = feed(&mut c, &event("Pulled", "m", "p", t(5)), t(5));
        let Decision::Patch {
            name,
            patch,
            event: patched,
        } = second
        else {
            panic!("{second:?}")
        };
        assert_eq!(Some(name), created.metadata.name);
        assert_eq!(patch["count"], 2);
        assert_eq!(patch["lastTimestamp"], json!(Time(t(5))));
        assert_eq!(patched.first_timestamp, Some(Time(t(0))));
        let third = feed(&mut c, &event("Pulled", "m", "p", t(9)), t(9));
        assert!(matches!(third, Decision::Patch { patch, .. } if patch["count"] == 3));
        // Another message, object or reason is another event.
        assert!(matches!(
            feed(&mut c, &event("Pulled", "other", "p", t(10)), t(10)),
            Decision::Create(_)
        ));
        assert!(matches!(
            feed(&mut c, &event("Pulled", "m", "q", t(10)), t(10)),
            Decision::Create(_)
        ));
    }

    #[test]
    fn similar_events_are_combined_after_ten_messages() {
        let mut c = Correlator::default();
        for i in 0..9 {
            let d = feed(&mut c, &event("Failed", &format!("m{i}"), "p", t(i)), t(i));
            assert!(matches!(d, Decision::Create(ref e) if e.message == Some(format!("m{i}"))));
        }
        let tenth = feed(&mut c, &event("Failed", "m9", "p", t(9)), t(9));
        let Decision::Create(combined) = tenth else {
            panic!("{tenth:?}")
        };
        assert_eq!(
            combined.message.as_deref(),
            Some("(combined from similar events): m9")
        );
        assert_eq!(combined.count, Some(1));
        // Further similar events patch the combined one.
        let next = feed(&mut c, &event("Failed", "m10", "p", t(10)), t(10));
        let Decision::Patch { name, patch, .. } = next else {
            panic!("{next:?}")
        };
        assert_eq!(Some(name), combined.metadata.name);
        assert_eq!(patch["count"], 2);
        assert_eq!(patch["message"], "(combined from similar events): m10");
        // After the 10-minute window the set starts over.
        let later = feed(&mut c, &event("Failed", "m11", "p", t(700)), t(700));
        assert!(matches!(later, Decision::Create(ref e) if e.message.as_deref() == Some("m11")));
    }

    #[test]
    fn spam_filter_allows_a_burst_of_25_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        let mut accepted = 0;
        for i in 0..40 {
            // Same message: patches, which the filter counts too.
            if feed(&mut c, &event("Tick", "m", "p", t(0)), t(i / 10)) != Decision::Skip {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 25);
        assert_eq!(
            feed(&mut c, &event("Tick", "m", "p", t(100)), t(100)),
            Decision::Skip
        );
        // Another object has its own bucket.
        assert!(feed(&mut c, &event("Tick", "m", "q", t(100)), t(100)) != Decision::Skip);
        // One token back after five minutes; the skipped events still count.
        let back = feed(&mut c, &event("Tick", "m", "p", t(305)), t(305));
        let Decision::Patch { patch, .. } = back else {
            panic!("{back:?}")
        };
        assert_eq!(patch["count"], 42);
        assert_eq!(
            feed(&mut c, &event("Tick", "m", "p", t(306)), t(306)),
            Decision::Skip
        );
    }

    #[test]
    fn lru_forgets_the_least_recently_used() {
        let mut l = Lru::new(2);
        l.insert("a".into(), 1);
        l.insert("b".into(), 2);
        assert_eq!(l.get_mut("a").copied(), Some(1));
        l.insert("c".into(), 3);
        assert!(l.get_mut("b").is_none());
        assert!(l.get_mut("a").is_some() && l.get_mut("c").is_some());
    }
}
