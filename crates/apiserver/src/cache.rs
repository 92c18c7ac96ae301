//! The watch cache: every object and recent history in memory, fed by one store watch.
//!
//! As upstream's cacher does, LIST and WATCH are served from here instead of the store, so that
//! a thousand watchers cost one store watch and a LIST is a walk over a BTreeMap. Entries keep
//! the stored bytes (shared with the store, not copied) plus the few parsed fields that label
//! and field selectors need, so filtering never re-parses an object.
//!
//! Consistency: a LIST without a resourceVersion must see every write acknowledged before it,
//! so callers first [`WatchCache::wait_for`] the store's current revision.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rkube_store::{Error as StoreError, Event, KeyValue, Store};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// Events kept for watches that resume from a past resourceVersion.
const HISTORY: usize = 20_000;
/// Events a slow watcher may fall behind before its watch is closed (it then resumes).
const FANOUT_BUFFER: usize = 8_192;

/// Fields that field selectors may ask about, extracted once per object version.
const SELECTABLE: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "spec.unschedulable",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
    "status.successful",
    "type",
    "reason",
    "source",
    "reportingComponent",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
];

/// One object version in the cache.
#[derive(Debug)]
pub struct Entry {
    /// Store key.
    pub key: String,
    /// Stored JSON (without resourceVersion).
    pub value: Bytes,
    /// The object's resourceVersion.
    pub rv: i64,
    /// `metadata.labels`.
    pub labels: Vec<(String, String)>,
    /// Selectable fields present on the object (see [`SELECTABLE`]) plus name and namespace.
    pub fields: Vec<(&'static str, String)>,
}

impl Entry {
    fn new(kv: &KeyValue, rv: i64) -> Entry {
        // Only metadata and a few scalars are read; everything else is skipped unparsed.
        let p: selectable::Partial = serde_json::from_slice(&kv.value).unwrap_or_default();
        let labels = p
            .metadata
            .labels
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| v.0.map(|v| (k, v)))
            .collect();
        let mut fields = vec![
            ("metadata.name", p.metadata.name.0.unwrap_or_default()),
            (
                "metadata.namespace",
                p.metadata.namespace.0.unwrap_or_default(),
            ),
        ];
        let groups = [
            ("spec.", p.spec),
            ("status.", p.status),
            ("involvedObject.", p.involved_object),
            ("source.", p.source),
            ("", p.top),
        ];
        for (prefix, leaves) in groups {
            for (k, v) in leaves.into_iter().flatten() {
                let Some(v) = v.0 else { continue };
                let path = format!("{prefix}{k}");
                // Upstream's event field "source" is the source's component.
                let path = if path == "source.component" {
                    "source".to_string()
                } else {
                    path
                };
                if let Some(known) = SELECTABLE.iter().find(|s| **s == path) {
                    fields.push((known, v));
                }
            }
        }
        Entry {
            key: kv.key.clone(),
            value: kv.value.clone(),
            rv,
            labels,
            fields,
        }
    }

    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A selectable field's value; missing fields read as "" as upstream's field sets do.
    pub fn field(&self, path: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| *k == path)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The object as JSON bytes with its resourceVersion.
    pub fn wire(&self) -> Vec<u8> {
        crate::codec::with_rv(&self.value, self.rv)
    }

    /// The object as `PartialObjectMetadata`: only its metadata is parsed (metadata-only
    /// watchers, such as the garbage collector's, see every change of every kind).
    pub fn partial_metadata(&self) -> Value {
        #[derive(serde::Deserialize)]
        struct MetadataOnly {
            #[serde(default)]
            metadata: Value,
        }
        let mut metadata = serde_json::from_slice::<MetadataOnly>(&self.value)
            .map(|m| m.metadata)
            .unwrap_or(Value::Null);
        if !metadata.is_object() {
            metadata = Value::Object(Default::default());
        }
        metadata["resourceVersion"] = Value::String(self.rv.to_string());
        serde_json::json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        })
    }

    /// The object parsed, with its resourceVersion.
    pub fn object(&self) -> Value {
        crate::codec::decode(&self.value, self.rv)
    }
}

/// A partial view of a stored object: what label and field selectors need, read without
/// building the rest of the object.
mod selectable {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// A JSON scalar as text; objects and arrays are skipped and read as None.
    #[derive(Default)]
    pub struct Scalar(pub Option<String>);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v.to_string())))
                }
                fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v)))
                }
                fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v.to_string())))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v.to_string())))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v.to_string())))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(Some(v.to_string())))
                }
                fn visit_unit<E>(self) -> Result<Scalar, E> {
                    Ok(Scalar(None))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scalar, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Scalar(None))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Scalar, A::Error> {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Scalar(None))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// The scalar members of an object.
    pub type Leaves = BTreeMap<String, Scalar>;

    #[derive(Default, Deserialize)]
    #[serde(default)]
    pub struct Meta {
        pub name: Scalar,
        pub namespace: Scalar,
        pub labels: Option<BTreeMap<String, Scalar>>,
    }

    #[derive(Default, Deserialize)]
    #[serde(default)]
    pub struct Partial {
        pub metadata: Meta,
        pub spec: Option<Leaves>,
        pub status: Option<Leaves>,
        /// Events are stored in their core form (`events.k8s.io` field labels such as
        /// `regarding.name` are mapped to these by the request's filter).
        #[serde(rename = "involvedObject")]
        pub involved_object: Option<Leaves>,
        pub source: Option<Leaves>,
        /// Top-level scalars (`type`, `reason`, `reportingComponent`…).
        #[serde(flatten)]
        pub top: Option<Leaves>,
    }
}

/// Kind of change, as watch clients name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in history and fanned out to watchers.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for a delete, its last state at the delete's revision).
    pub entry: Arc<Entry>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<Entry>>,
}

impl CacheEvent {
    /// The revision of the change.
    pub fn rv(&self) -> i64 {
        self.entry.rv
    }
}

struct Inner {
    objects: BTreeMap<String, Arc<Entry>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Revision the cache reflects.
    rev: i64,
    /// History covers every change after this revision.
    oldest: i64,
}

/// Why a watch cannot start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOld {
    /// The oldest resourceVersion still available.
    pub oldest: i64,
}

/// The cache. Create with [`WatchCache::start`].
pub struct WatchCache {
    inner: RwLock<Inner>,
    fanout: broadcast::Sender<Arc<CacheEvent>>,
    rev: watch::Sender<i64>,
}

impl WatchCache {
    /// Loads everything under `/registry/` and follows the store from there.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<WatchCache>, StoreError> {
        let (fanout, _) = broadcast::channel(FANOUT_BUFFER);
        let (rev_tx, _) = watch::channel(0);
        let cache = Arc::new(WatchCache {
            inner: RwLock::new(Inner {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                rev: 0,
                oldest: 0,
            }),
            fanout,
            rev: rev_tx,
        });
        let rev = cache.reload(&*store).await?;
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            let mut from = rev;
            loop {
                let Some(cache) = weak.upgrade() else { return };
                match cache.follow(&*store, from).await {
                    Ok(last) => from = last,
                    Err(StoreError::Compacted { .. }) => match cache.reload(&*store).await {
                        Ok(r) => from = r,
                        Err(e) => tracing::warn!("watch cache reload: {e}"),
                    },
                    Err(e) => {
                        tracing::warn!("watch cache: store watch failed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                drop(cache);
            }
        });
        Ok(cache)
    }

    async fn reload(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let (kvs, rev) = store.list("/registry/").await?;
        let mut inner = self.inner.write().expect("cache lock");
        inner.objects = kvs
            .iter()
            .map(|kv| (kv.key.clone(), Arc::new(Entry::new(kv, kv.mod_revision))))
            .collect();
        inner.history.clear();
        inner.rev = rev;
        inner.oldest = rev;
        drop(inner);
        self.rev.send_replace(rev);
        Ok(rev)
    }

    /// Applies store events until the watch ends; returns the last revision applied.
    async fn follow(&self, store: &dyn Store, from: i64) -> Result<i64, StoreError> {
        let mut stream = store.watch("/registry/", from).await?;
        let mut last = from;
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            last = ev.revision();
            self.apply(ev);
        }
        Ok(last)
    }

    fn apply(&self, ev: Event) {
        let mut inner = self.inner.write().expect("cache lock");
        let event = match ev {
            Event::Put { kv, .. } => {
                let entry = Arc::new(Entry::new(&kv, kv.mod_revision));
                let prev = inner.objects.insert(kv.key.clone(), entry.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent { kind, entry, prev }
            }
            Event::Delete { prev, revision } => {
                let old = inner.objects.remove(&prev.key);
                CacheEvent {
                    kind: EventType::Deleted,
                    entry: Arc::new(Entry::new(&prev, revision)),
                    prev: old,
                }
            }
        };
        let event = Arc::new(event);
        inner.rev = event.rv();
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            if let Some(old) = inner.history.pop_front() {
                inner.oldest = old.rv();
            }
        }
        // Sent under the lock so that a watcher subscribing under the same lock sees every
        // event exactly once: either in its backlog or on its receiver.
        let _ = self.fanout.send(event);
        let rev = inner.rev;
        drop(inner);
        self.rev.send_replace(rev);
    }

    /// The revision the cache reflects.
    pub fn revision(&self) -> i64 {
        *self.rev.borrow()
    }

    /// Waits until the cache reflects `rev`; false if that took too long.
    pub async fn wait_for(&self, rev: i64) -> bool {
        let mut rx = self.rev.subscribe();
        let wait = rx.wait_for(|r| *r >= rev);
        matches!(
            tokio::time::timeout(Duration::from_secs(3), wait).await,
            Ok(Ok(_))
        )
    }

    /// Objects whose key starts with `prefix` and sorts after `after` (for pagination), and the
    /// revision they reflect.
    pub fn list(&self, prefix: &str, after: Option<&str>) -> (Vec<Arc<Entry>>, i64) {
        let inner = self.inner.read().expect("cache lock");
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let items = inner
            .objects
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rev)
    }

    /// Like [`WatchCache::list`], but as the objects were at revision `rev` (a LIST with
    /// `resourceVersionMatch=Exact`, or the later pages of a paginated LIST): today's objects
    /// with the history after `rev` undone. `TooOld` once that history is gone.
    pub fn list_at(
        &self,
        prefix: &str,
        after: Option<&str>,
        rev: i64,
    ) -> Result<(Vec<Arc<Entry>>, i64), TooOld> {
        let inner = self.inner.read().expect("cache lock");
        if rev >= inner.rev {
            drop(inner);
            return Ok(self.list(prefix, after));
        }
        if rev < inner.oldest {
            return Err(TooOld {
                oldest: inner.oldest,
            });
        }
        let mut objects: BTreeMap<String, Arc<Entry>> = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for event in inner.history.iter().rev().take_while(|e| e.rv() > rev) {
            if !event.entry.key.starts_with(prefix) {
                continue;
            }
            match &event.prev {
                Some(prev) => objects.insert(prev.key.clone(), prev.clone()),
                None => objects.remove(&event.entry.key),
            };
        }
        let items = objects
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .map(|(_, v)| v)
            .collect();
        Ok((items, rev))
    }

    /// One object.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.inner
            .read()
            .expect("cache lock")
            .objects
            .get(key)
            .cloned()
    }

    /// Starts a watch after revision `after` (0: from now): the backlog of past events and a
    /// receiver for what follows. Events for every key are delivered; callers filter.
    #[allow(clippy::type_complexity)]
    pub fn watch(
        &self,
        after: i64,
    ) -> Result<
        (
            Vec<Arc<CacheEvent>>,
            broadcast::Receiver<Arc<CacheEvent>>,
            i64,
        ),
        TooOld,
    > {
        let inner = self.inner.read().expect("cache lock");
        let rx = self.fanout.subscribe();
        if after == 0 || after >= inner.rev {
            return Ok((Vec::new(), rx, inner.rev));
        }
        if after < inner.oldest {
            return Err(TooOld {
                oldest: inner.oldest,
            });
        }
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rv() > after)
            .cloned()
            .collect();
        Ok((backlog, rx, inner.rev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Entry {
        let kv = KeyValue {
            key: "/registry/x".into(),
            value: Bytes::from(json.to_string()),
            create_revision: 1,
            mod_revision: 1,
        };
        Entry::new(&kv, 1)
    }

    #[test]
    fn selectable_fields_and_labels_without_a_full_parse() {
        let pod = entry(
            r#"{"metadata":{"name":"web","namespace":"default","labels":{"app":"nginx"}},
                "spec":{"nodeName":"n1","containers":[{"name":"c"}],"hostNetwork":false},
                "status":{"phase":"Running","conditions":[]}}"#,
        );
        assert_eq!(pod.label("app"), Some("nginx"));
        assert_eq!(pod.field("metadata.name"), "web");
        assert_eq!(pod.field("spec.nodeName"), "n1");
        assert_eq!(pod.field("spec.hostNetwork"), "false");
        assert_eq!(pod.field("status.phase"), "Running");
        assert_eq!(pod.field("spec.schedulerName"), "");
        let event = entry(
            r#"{"metadata":{"name":"e"},"involvedObject":{"name":"web","kind":"Pod"},
                "reason":"Started","type":"Normal","source":{"component":"kubelet"}}"#,
        );
        assert_eq!(event.field("involvedObject.name"), "web");
        assert_eq!(event.field("reason"), "Started");
        assert_eq!(event.field("source"), "kubelet");
        let meta = pod.partial_metadata();
        assert_eq!(meta["kind"], "PartialObjectMetadata");
        assert_eq!(meta["metadata"]["name"], "web");
        assert_eq!(meta["metadata"]["resourceVersion"], "1");
        assert!(meta.get("spec").is_none());
        // Odd shapes never fail: they just select nothing.
        let odd = entry(r#"{"metadata":[],"spec":"x","type":{"a":1}}"#);
        assert_eq!(odd.field("metadata.name"), "");
        assert_eq!(odd.field("type"), "");
    }
}
