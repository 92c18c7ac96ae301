//! The embedded backend: the default datastore of `rkube server --data-dir`.
//!
//! All current keys live in memory (a `BTreeMap`, values as shared [`Bytes`]), so reads and
//! lists never touch the disk. Durability comes from a write-ahead log with group commit
//! ([`writer`]): a mutation is acknowledged only after its record is fdatasync'ed, and
//! concurrent mutations share one fdatasync. The log is bounded by snapshots ([`snapshot`]):
//! past `snapshot_after_bytes` a new segment starts and the map is written out in the
//! background, after which older segments are removed. Recovery ([`wal`]) is the newest snapshot
//! plus the log after it, with a torn tail truncated. Watches ([`watch`]) replay from an
//! in-memory history and then follow live changes.
//!
//! The history is not persisted: after a restart everything up to the restart revision counts
//! as compacted. A directory lock (`LOCK`, flock) keeps two stores off the same data dir.
//!
//! What it does not do: replication, or data sets bigger than memory.

mod record;
mod snapshot;
mod wal;
mod watch;
mod writer;

pub use watch::Retention;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{Error, KeyValue, Result, Store, WatchStream};
use watch::History;
use writer::{Done, Msg, Op, Writer};

/// Tuning for [`EmbeddedStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Snapshot and start a new log segment once the current one is this big (default 64 MiB).
    pub snapshot_after_bytes: u64,
    /// How much watch history to keep in memory.
    pub retention: Retention,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_after_bytes: 64 << 20,
            retention: Retention::default(),
        }
    }
}

/// The state readers see: only committed (durable) changes.
pub(crate) struct State {
    pub(crate) map: BTreeMap<String, KeyValue>,
    pub(crate) rev: i64,
    pub(crate) history: History,
}

/// What the store handle, the writer thread and watchers share.
pub(crate) struct Shared {
    state: RwLock<State>,
    /// One message per committed batch, sent under the state's write lock.
    pub(crate) events: broadcast::Sender<Arc<Vec<crate::Event>>>,
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The embedded, crash-safe store.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Msg>,
    dir: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .finish()
    }
}

/// How long `open` waits for a previous store on the same directory to let go of it.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with default [`Options`].
    pub fn open(dir: &Path) -> Result<Arc<EmbeddedStore>> {
        Self::open_with(dir, Options::default())
    }

    /// Opens (or creates) the store in `dir`. Blocks while recovering; call it at startup.
    pub fn open_with(dir: &Path, options: Options) -> Result<Arc<EmbeddedStore>> {
        let io = |what: &str, e: std::io::Error| {
            Error::Backend(format!("{what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        let lock = lock_dir(dir)?;
        let recovered = wal::recover(dir)?;
        let rev = recovered.rev;
        let (events, _) = broadcast::channel(watch::CHANNEL_BATCHES);
        let shared = Arc::new(Shared {
            state: RwLock::new(State {
                map: recovered.map,
                rev,
                history: History::new(rev, options.retention),
            }),
            events,
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer::new(
            Arc::clone(&shared),
            recovered.log,
            dir.to_path_buf(),
            options.snapshot_after_bytes,
            lock,
        );
        std::thread::Builder::new()
            .name("rkube-store-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io("starting the writer for", e))?;
        tracing::info!(dir = %dir.display(), rev, "embedded store open");
        Ok(Arc::new(EmbeddedStore {
            shared,
            tx,
            dir: dir.to_path_buf(),
        }))
    }

    /// The revision at and below which watch history is gone.
    pub fn compacted_revision(&self) -> i64 {
        self.shared.read().history.compacted()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Commits what is queued, stops the writer and releases the directory. Later writes fail;
    /// reads keep working on the in-memory state.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn submit(&self, op: Op) -> Result<Done> {
        let closed = || Error::Backend("embedded store is closed".into());
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Op(op, tx)).map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// Takes the directory's exclusive lock, waiting a little for a store being closed.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Backend(format!("{}: {e}", path.display())))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Backend(format!(
                    "{} is in use by another store",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Backend(format!("locking {}: {e}", path.display())));
            }
        }
    }
}

fn unexpected() -> Error {
    Error::Backend("internal: unexpected writer answer".into())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.read().map.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        let st = self.shared.read();
        let kvs = st
            .map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((kvs, st.rev))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<i64> {
        let op = Op::Create {
            key: key.to_string(),
            value,
        };
        match self.submit(op).await? {
            Done::Rev(r) => Ok(r),
            Done::Deleted(..) => Err(unexpected()),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<i64>) -> Result<i64> {
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected,
        };
        match self.submit(op).await? {
            Done::Rev(r) => Ok(r),
            Done::Deleted(..) => Err(unexpected()),
        }
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> Result<(KeyValue, i64)> {
        let op = Op::Delete {
            key: key.to_string(),
            expected,
        };
        match self.submit(op).await? {
            Done::Deleted(kv, r) => Ok((kv, r)),
            Done::Rev(_) => Err(unexpected()),
        }
    }

    async fn watch(&self, prefix: &str, after: i64) -> Result<WatchStream> {
        watch::open(Arc::clone(&self.shared), prefix, after)
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.read().rev)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut st = self.shared.write();
        if revision > st.rev {
            return Err(Error::FutureRevision(revision));
        }
        st.history.compact(revision);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
