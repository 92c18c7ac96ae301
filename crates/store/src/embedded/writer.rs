//! The single writer: group commit of all mutations.
//!
//! One OS thread owns the log file. Callers send a mutation over a channel with a oneshot for
//! the answer; the thread takes everything queued, decides each mutation against the current
//! state plus the earlier mutations of the same batch (compare-and-swap is checked here, at
//! apply time, so it is race-free), gives the successful ones consecutive revisions, appends
//! them all with one `write()` and one fdatasync, and only then publishes them to readers and
//! watchers and answers. Readers therefore never see a change that a crash could take back,
//! and N concurrent writers cost one fsync per batch rather than N.
//!
//! It is a thread, not a tokio task, because write and fdatasync block; it exits when every
//! sender is gone or on [`Msg::Close`], finishing any snapshot in progress first.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::record::{self, Record};
use super::wal::{self, LogFile};
use super::{Shared, snapshot};
use crate::{Error, Event, KeyValue, Result};

/// Most mutations committed by one fdatasync.
const MAX_BATCH: usize = 4096;

/// A mutation.
#[derive(Debug)]
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<i64>,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// The answer to a mutation.
#[derive(Debug)]
pub(crate) enum Done {
    Rev(i64),
    Deleted(KeyValue, i64),
}

/// What the writer thread receives.
pub(crate) enum Msg {
    Op(Op, oneshot::Sender<Result<Done>>),
    /// Stop after the mutations queued before this; answer once the files are released.
    Close(oneshot::Sender<()>),
}

/// State owned by the writer thread.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    log: LogFile,
    dir: PathBuf,
    snapshot_after_bytes: u64,
    /// The data directory's lock, held for as long as the writer runs.
    _lock: File,
    failed: Option<String>,
    snapshot: Option<JoinHandle<()>>,
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        log: LogFile,
        dir: PathBuf,
        snapshot_after_bytes: u64,
        lock: File,
    ) -> Self {
        Writer {
            shared,
            log,
            dir,
            snapshot_after_bytes,
            _lock: lock,
            failed: None,
            snapshot: None,
            buf: Vec::new(),
        }
    }

    /// Runs until all senders are gone or a close request arrives.
    pub(crate) fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut close = None;
            let mut msg = Some(first);
            while let Some(m) = msg.take() {
                match m {
                    Msg::Op(op, reply) => batch.push((op, reply)),
                    Msg::Close(reply) => {
                        close = Some(reply);
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    msg = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
            if let Some(reply) = close {
                rx.close();
                self.finish();
                let _ = reply.send(());
                return;
            }
        }
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(h) = self.snapshot.take() {
            let _ = h.join();
        }
    }

    /// Decides, logs, publishes and answers one batch.
    fn commit(&mut self, batch: &mut Vec<(Op, oneshot::Sender<Result<Done>>)>) {
        if let Some(why) = &self.failed {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(Error::Backend(why.clone())));
            }
            return;
        }
        self.buf.clear();
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let rev = {
            let st = self.shared.read();
            let mut overlay: HashMap<&str, Option<KeyValue>> = HashMap::new();
            let mut rev = st.rev;
            for (op, _) in batch.iter() {
                let current = match overlay.get(op.key()) {
                    Some(v) => v.clone(),
                    None => st.map.get(op.key()).cloned(),
                };
                match decide(op, current, rev + 1) {
                    Ok((event, done)) => {
                        rev += 1;
                        record::encode(&to_record(&event), &mut self.buf);
                        let after = match &event {
                            Event::Put { kv, .. } => Some(kv.clone()),
                            Event::Delete { .. } => None,
                        };
                        overlay.insert(op.key(), after);
                        events.push(event);
                        results.push(Ok(done));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            rev
        };

        if !self.buf.is_empty() {
            if let Err(e) = self.log.append_sync(&self.buf) {
                let why = format!("write-ahead log failed, store is read-only until reopened: {e}");
                tracing::error!("{why}");
                self.failed = Some(why.clone());
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(Error::Backend(why.clone())));
                }
                return;
            }
            let now = Instant::now();
            let mut st = self.shared.write();
            for e in &events {
                match e {
                    Event::Put { kv, .. } => {
                        st.map.insert(kv.key.clone(), kv.clone());
                    }
                    Event::Delete { prev, .. } => {
                        st.map.remove(&prev.key);
                    }
                }
                st.history.push(e.clone(), now);
            }
            st.rev = rev;
            // No receivers is fine.
            let _ = self.shared.events.send(Arc::new(events));
        }
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        self.maybe_snapshot(rev);
    }

    /// Past the size threshold: start a new segment and snapshot in the background.
    fn maybe_snapshot(&mut self, rev: i64) {
        if self.log.bytes < self.snapshot_after_bytes {
            return;
        }
        if self.snapshot.as_ref().is_some_and(|h| !h.is_finished()) {
            return; // one at a time; the log keeps growing meanwhile
        }
        if let Some(h) = self.snapshot.take() {
            let _ = h.join();
        }
        match wal::create_segment(&self.dir, rev + 1) {
            Ok(log) => self.log = log,
            Err(e) => {
                tracing::warn!("cannot start a new log segment: {e}");
                return;
            }
        }
        let map = self.shared.read().map.clone();
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("rkube-store-snapshot".into())
            .spawn(move || {
                let result = snapshot::write(&dir, rev, &map)
                    .and_then(|_| snapshot::remove_obsolete(&dir, rev));
                match result {
                    Ok(()) => tracing::debug!(rev, keys = map.len(), "snapshot written"),
                    Err(e) => tracing::warn!(rev, "snapshot failed, keeping the log: {e}"),
                }
            });
        match spawned {
            Ok(h) => self.snapshot = Some(h),
            Err(e) => tracing::warn!("cannot start the snapshot thread: {e}"),
        }
    }
}

/// Applies the rules of one mutation to the key's current value.
fn decide(op: &Op, current: Option<KeyValue>, rev: i64) -> Result<(Event, Done)> {
    let check = |cur: &KeyValue, expected: &Option<i64>| match expected {
        Some(e) if *e != cur.mod_revision => Err(Error::Conflict {
            key: cur.key.clone(),
            current: cur.mod_revision,
        }),
        _ => Ok(()),
    };
    match (op, current) {
        (Op::Create { key, .. }, Some(_)) => Err(Error::AlreadyExists(key.clone())),
        (Op::Create { key, value }, None) => Ok((
            Event::Put {
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: rev,
                    mod_revision: rev,
                },
                prev: None,
            },
            Done::Rev(rev),
        )),
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => {
            Err(Error::NotFound(key.clone()))
        }
        (
            Op::Update {
                key,
                value,
                expected,
            },
            Some(cur),
        ) => {
            check(&cur, expected)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: cur.create_revision,
                mod_revision: rev,
            };
            Ok((
                Event::Put {
                    kv,
                    prev: Some(cur),
                },
                Done::Rev(rev),
            ))
        }
        (Op::Delete { expected, .. }, Some(cur)) => {
            check(&cur, expected)?;
            Ok((
                Event::Delete {
                    prev: cur.clone(),
                    revision: rev,
                },
                Done::Deleted(cur, rev),
            ))
        }
    }
}

fn to_record(e: &Event) -> Record {
    match e {
        Event::Put { kv, .. } => Record::Put {
            rev: kv.mod_revision,
            create_rev: kv.create_revision,
            key: kv.key.clone(),
            value: kv.value.clone(),
        },
        Event::Delete { prev, revision } => Record::Delete {
            rev: *revision,
            key: prev.key.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(rev: i64) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: Bytes::from_static(b"v"),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn decide_rules() {
        let create = Op::Create {
            key: "/k".into(),
            value: Bytes::new(),
        };
        assert!(matches!(decide(&create, None, 5), Ok((_, Done::Rev(5)))));
        assert_eq!(
            decide(&create, Some(kv(3)), 5).unwrap_err(),
            Error::AlreadyExists("/k".into())
        );
        let update = |expected| Op::Update {
            key: "/k".into(),
            value: Bytes::new(),
            expected,
        };
        assert_eq!(
            decide(&update(None), None, 5).unwrap_err(),
            Error::NotFound("/k".into())
        );
        assert_eq!(
            decide(&update(Some(2)), Some(kv(3)), 5).unwrap_err(),
            Error::Conflict {
                key: "/k".into(),
                current: 3
            }
        );
        match decide(&update(Some(3)), Some(kv(3)), 5).unwrap() {
            (Event::Put { kv: new, prev }, Done::Rev(5)) => {
                assert_eq!(new.create_revision, 1);
                assert_eq!(new.mod_revision, 5);
                assert_eq!(prev, Some(kv(3)));
            }
            other => panic!("unexpected {other:?}"),
        }
        let delete = |expected| Op::Delete {
            key: "/k".into(),
            expected,
        };
        assert!(decide(&delete(Some(1)), Some(kv(3)), 5).is_err());
        assert!(matches!(
            decide(&delete(None), Some(kv(3)), 5),
            Ok((Event::Delete { revision: 5, .. }, Done::Deleted(_, 5)))
        ));
    }
}
