//! Watch for the embedded store: a bounded in-memory event history plus live fan-out.
//!
//! Every committed change is an [`Event`] with its own revision, so the history is a run of
//! consecutive revisions `compacted + 1 ..= current`: finding where a watch resumes is a binary
//! search. Retention keeps the last `keep_events` events or the last `keep_for`, whichever
//! holds more, but never more than `max_events` (defaults: 10,000 events, 5 minutes, 250,000):
//! 10,000 covers a burst of a few seconds at full write speed, 5 minutes covers the re-list
//! period of ordinary clients, and the hard cap bounds memory when writes never stop.
//!
//! Live events go out on a tokio broadcast channel, one message per committed batch, sent while
//! the writer holds the state's write lock; a watcher subscribes under the read lock, so the
//! replayed history and the live stream meet with no gap and no duplicate. Writers never wait for
//! watchers: a watcher that lags past the channel's capacity catches up from the history, and if
//! the history has moved past it too, its stream ends with [`Error::Compacted`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::Shared;
use crate::{Error, Event, Result, WatchStream};

/// Batches the live channel holds before a slow watcher has to resync from history.
pub(crate) const CHANNEL_BATCHES: usize = 1024;

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Always keep at least this many recent events…
    pub keep_events: usize,
    /// …and at least the events of this recent period…
    pub keep_for: Duration,
    /// …but never more than this many.
    pub max_events: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_events: 10_000,
            keep_for: Duration::from_secs(300),
            max_events: 250_000,
        }
    }
}

/// Recent events, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<(Instant, Event)>,
    /// History at and below this revision is gone.
    compacted: i64,
    retention: Retention,
}

impl History {
    /// An empty history whose oldest available change is `compacted + 1`.
    pub(crate) fn new(compacted: i64, retention: Retention) -> Self {
        History {
            events: VecDeque::new(),
            compacted,
            retention,
        }
    }

    /// The compacted revision.
    pub(crate) fn compacted(&self) -> i64 {
        self.compacted
    }

    /// Records a committed event and drops what retention no longer covers.
    pub(crate) fn push(&mut self, event: Event, now: Instant) {
        self.events.push_back((now, event));
        let r = self.retention;
        while let Some((at, ev)) = self.events.front() {
            let over_cap = self.events.len() > r.max_events;
            let expired = self.events.len() > r.keep_events
                && now.saturating_duration_since(*at) > r.keep_for;
            if !(over_cap || expired) {
                break;
            }
            self.compacted = ev.revision();
            self.events.pop_front();
        }
    }

    /// Forgets history at and below `rev`.
    pub(crate) fn compact(&mut self, rev: i64) {
        while self
            .events
            .front()
            .is_some_and(|(_, e)| e.revision() <= rev)
        {
            self.events.pop_front();
        }
        self.compacted = self.compacted.max(rev);
    }

    /// Events after `after` on keys under `prefix`, or [`Error::Compacted`].
    pub(crate) fn since(&self, after: i64, prefix: &str) -> Result<Vec<Event>> {
        if after < self.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: self.compacted,
            });
        }
        let start = self.events.partition_point(|(_, e)| e.revision() <= after);
        Ok(self
            .events
            .range(start..)
            .map(|(_, e)| e)
            .filter(|e| e.key().starts_with(prefix))
            .cloned()
            .collect())
    }
}

struct Watcher {
    shared: Arc<Shared>,
    rx: broadcast::Receiver<Arc<Vec<Event>>>,
    pending: VecDeque<Event>,
    prefix: String,
    /// Highest revision already looked at (delivered or filtered out).
    last: i64,
    done: bool,
}

/// Opens a watch on `prefix` for changes after `after` (0 = from now).
pub(crate) fn open(shared: Arc<Shared>, prefix: &str, after: i64) -> Result<WatchStream> {
    let (pending, rx, last) = {
        let st = shared.read();
        let after = if after <= 0 { st.rev } else { after };
        let replay = st.history.since(after, prefix)?;
        // Subscribe under the read lock: the writer publishes under the write lock.
        let rx = shared.events.subscribe();
        (VecDeque::from(replay), rx, after.max(st.rev))
    };
    let w = Watcher {
        shared,
        rx,
        pending,
        prefix: prefix.to_string(),
        last,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(w, next)))
}

async fn next(mut w: Watcher) -> Option<(Result<Event>, Watcher)> {
    loop {
        if let Some(e) = w.pending.pop_front() {
            return Some((Ok(e), w));
        }
        if w.done {
            return None;
        }
        match w.rx.recv().await {
            Ok(batch) => {
                for e in batch.iter() {
                    if e.revision() > w.last {
                        w.last = e.revision();
                        if e.key().starts_with(&w.prefix) {
                            w.pending.push_back(e.clone());
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if let Err(e) = resync(&mut w) {
                    w.done = true;
                    return Some((Err(e), w));
                }
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// After falling behind the live channel, continue from the history if it still reaches back.
fn resync(w: &mut Watcher) -> Result<()> {
    let shared = Arc::clone(&w.shared);
    let st = shared.read();
    let missed = st.history.since(w.last, &w.prefix)?;
    w.pending.extend(missed);
    w.rx = shared.events.subscribe();
    w.last = w.last.max(st.rev);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;
    use bytes::Bytes;

    fn put(key: &str, rev: i64) -> Event {
        Event::Put {
            kv: KeyValue {
                key: key.into(),
                value: Bytes::new(),
                create_revision: rev,
                mod_revision: rev,
            },
            prev: None,
        }
    }

    fn retention(keep_events: usize, keep_for: Duration, max_events: usize) -> Retention {
        Retention {
            keep_events,
            keep_for,
            max_events,
        }
    }

    #[test]
    fn since_filters_and_resumes() {
        let mut h = History::new(0, Retention::default());
        let now = Instant::now();
        for (i, k) in ["/a/1", "/b/1", "/a/2"].iter().enumerate() {
            h.push(put(k, i as i64 + 1), now);
        }
        let revs = |v: Vec<Event>| v.iter().map(Event::revision).collect::<Vec<_>>();
        assert_eq!(revs(h.since(0, "/a/").unwrap()), vec![1, 3]);
        assert_eq!(revs(h.since(1, "").unwrap()), vec![2, 3]);
        assert_eq!(revs(h.since(3, "").unwrap()), Vec::<i64>::new());
        assert_eq!(revs(h.since(9, "").unwrap()), Vec::<i64>::new());
    }

    #[test]
    fn count_cap_compacts() {
        let mut h = History::new(0, retention(2, Duration::ZERO, 3));
        let now = Instant::now();
        for r in 1..=5 {
            h.push(put("/k", r), now);
        }
        // Time is not up, but the hard cap of 3 holds.
        assert_eq!(h.compacted(), 2);
        assert!(matches!(
            h.since(1, ""),
            Err(Error::Compacted { compacted: 2, .. })
        ));
        assert_eq!(h.since(2, "").unwrap().len(), 3);
    }

    #[test]
    fn age_and_count_keep_the_larger() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        let mut h = History::new(0, retention(2, Duration::from_secs(5), 100));
        for r in 1..=4 {
            h.push(put("/k", r), t0);
        }
        // All young: nothing dropped although more than keep_events.
        assert_eq!(h.compacted(), 0);
        h.push(put("/k", 5), later);
        // Old ones expire down to keep_events.
        assert_eq!(h.compacted(), 3);
        assert_eq!(h.since(3, "").unwrap().len(), 2);
    }

    #[test]
    fn explicit_compact() {
        let mut h = History::new(0, Retention::default());
        let now = Instant::now();
        for r in 1..=5 {
            h.push(put("/k", r), now);
        }
        h.compact(3);
        assert!(h.since(2, "").is_err());
        assert_eq!(h.since(3, "").unwrap().len(), 2);
        h.compact(1); // never goes back
        assert_eq!(h.compacted(), 3);
    }
}
