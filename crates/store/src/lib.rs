//! rkube-store: the datastore, with etcd's semantics.
//!
//! Keys are strings (`/registry/pods/default/web`), values opaque bytes. One global revision
//! counts every change; an object's `mod_revision` is its `resourceVersion`. Updates and deletes
//! can be conditional on that revision (compare-and-swap), watches start from any revision not
//! yet compacted, and compaction forgets history older than a revision.
//!
//! This crate knows nothing about HTTP or Kubernetes objects: only the apiserver uses it.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stored key and its value at some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty in the `prev` of a create).
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: i64,
    /// Revision of the last change: the object's resourceVersion.
    pub mod_revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was created or updated; `kv.mod_revision` is the change's revision.
    Put {
        /// The new value.
        kv: KeyValue,
        /// The value before, if the key existed.
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is the last value it had.
    Delete {
        /// The value just before the delete.
        prev: KeyValue,
        /// The revision of the delete.
        revision: i64,
    },
}

impl Event {
    /// The revision of this change.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// What can go wrong in a store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// Update or delete of a missing key.
    #[error("key {0} not found")]
    NotFound(String),
    /// Compare-and-swap lost: the key's current revision differs from the expected one.
    #[error("key {key} is at revision {current}, not the expected one")]
    Conflict {
        /// The key.
        key: String,
        /// Its current mod revision.
        current: i64,
    },
    /// A watch or read asked for history already compacted away.
    #[error("required revision {requested} has been compacted (oldest available {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The compacted revision: history at or below it is gone.
        compacted: i64,
    },
    /// A revision in the future.
    #[error("required revision {0} is a future revision")]
    FutureRevision(i64),
    /// The backend failed (disk, network, corrupt data…).
    #[error("storage backend: {0}")]
    Backend(String),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of watch events, in revision order. It ends with an error if the watch cannot go on
/// (e.g. the backend compacted past it).
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// A key-value store with etcd's semantics.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// All keys starting with `prefix`, in key order, and the revision they were read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists. Returns the new revision.
    /// The write is durable when this returns.
    async fn create(&self, key: &str, value: Bytes) -> Result<i64>;

    /// Replaces `key` if its current `mod_revision` is `expected` (or unconditionally when
    /// `expected` is `None`). Returns the new revision. Durable when this returns.
    async fn update(&self, key: &str, value: Bytes, expected: Option<i64>) -> Result<i64>;

    /// Deletes `key` if its current `mod_revision` is `expected` (or unconditionally). Returns
    /// the deleted value and the revision of the delete. Durable when this returns.
    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Changes to keys starting with `prefix` after revision `after` (exclusive): `after = 0`
    /// means "from now on". Fails with [`Error::Compacted`] if that history is gone.
    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream>;

    /// The latest revision.
    async fn current_revision(&self) -> Result<i64>;

    /// Forgets history at and below `revision`.
    async fn compact(&self, revision: i64) -> Result<()>;
}

/// The default backend: in memory, durable through a group-committed write-ahead log.
pub mod embedded;
/// The etcd v3 backend (`--datastore-endpoint etcd://host:port`).
pub mod etcd;

#[cfg(test)]
mod conformance;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;
