//! The scheduling queue, as upstream's `PriorityQueue`: an **active** queue (highest priority
//! first, then oldest), a **backoff** queue (pods that failed wait 1 s, doubling per attempt up
//! to 10 s) and an **unschedulable** set (pods no node fits; they wait for a cluster event
//! that may help: a node added or changed, a pod deleted, which moves them all back through
//! [`SchedulingQueue::move_all_to_active_or_backoff`]). Leftover unschedulable pods are retried
//! after [`UNSCHEDULABLE_MAX_DURATION`] regardless.
//!
//! The clock is a parameter of the synchronous methods so tests drive time explicitly.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

use crate::framework::pod_key;

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without any event before it is retried anyway.
pub const UNSCHEDULABLE_MAX_DURATION: Duration = Duration::from_secs(5 * 60);

/// Where a pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// Waiting to be scheduled.
    Active,
    /// Waiting for its backoff to expire.
    Backoff,
    /// Waiting for a cluster event.
    Unschedulable,
    /// Popped, being scheduled.
    InFlight,
}

/// A pod in the queue with its attempt bookkeeping.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The newest version of the pod.
    pub pod: Arc<Pod>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it entered the active queue (ordering among equal priorities).
    pub timestamp: Instant,
    /// When its last attempt failed.
    pub failed_at: Option<Instant>,
    /// The scheduling cycle that popped it.
    pub cycle: u64,
    /// Where it is.
    pub at: Where,
    seq: u64,
}

impl QueuedPod {
    /// When its backoff ends.
    pub fn backoff_expiry(&self) -> Instant {
        let failed = self.failed_at.unwrap_or(self.timestamp);
        failed + backoff_duration(self.attempts)
    }
}

/// The backoff after `attempts` failed attempts: 1 s, 2 s, 4 s, 8 s, 10 s, 10 s, …
pub fn backoff_duration(attempts: u32) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let shift = (attempts - 1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

#[derive(PartialEq, Eq)]
struct ActiveEntry {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
}

impl Ord for ActiveEntry {
    fn cmp(&self, o: &Self) -> Ordering {
        // Max-heap: higher priority first, then the older timestamp, then insertion order.
        self.priority
            .cmp(&o.priority)
            .then(o.timestamp.cmp(&self.timestamp))
            .then(o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<String, QueuedPod>,
    active: BinaryHeap<ActiveEntry>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    unschedulable: HashSet<String>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq();
        self.unschedulable.remove(key);
        let Some(qp) = self.pods.get_mut(key) else {
            return;
        };
        qp.at = Where::Active;
        qp.seq = seq;
        qp.timestamp = now;
        let priority = qp.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.active.push(ActiveEntry {
            priority,
            timestamp: now,
            seq,
            key: key.to_string(),
        });
    }

    fn push_backoff(&mut self, key: &str) {
        let seq = self.next_seq();
        self.unschedulable.remove(key);
        let Some(qp) = self.pods.get_mut(key) else {
            return;
        };
        qp.at = Where::Backoff;
        qp.seq = seq;
        let expiry = qp.backoff_expiry();
        self.backoff.push(Reverse((expiry, seq, key.to_string())));
    }

    fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((expiry, seq, _))) = self.backoff.peek() {
            if *expiry > now {
                break;
            }
            let (seq, key) = (*seq, self.backoff.pop().unwrap().0.2);
            if self
                .pods
                .get(&key)
                .is_some_and(|p| p.seq == seq && p.at == Where::Backoff)
            {
                self.push_active(&key, now);
            }
        }
    }

    /// Back to backoff if still backing off, else active.
    fn requeue(&mut self, key: &str, now: Instant) {
        let Some(qp) = self.pods.get(key) else {
            return;
        };
        if qp.backoff_expiry() > now {
            self.push_backoff(key);
        } else {
            self.push_active(key, now);
        }
    }
}

/// The queue of pods waiting for a node.
#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a new pending pod, or updates the stored copy of a known one. An update to an
    /// unschedulable pod may make it schedulable, so it is requeued.
    pub fn add_or_update(&self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        let mut q = self.inner.lock().unwrap();
        match q.pods.get_mut(&key) {
            Some(qp) => {
                qp.pod = pod;
                if qp.at == Where::Unschedulable {
                    q.requeue(&key, now);
                }
            }
            None => {
                q.pods.insert(
                    key.clone(),
                    QueuedPod {
                        pod,
                        attempts: 0,
                        timestamp: now,
                        failed_at: None,
                        cycle: 0,
                        at: Where::Active,
                        seq: 0,
                    },
                );
                q.push_active(&key, now);
            }
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&self, key: &str) {
        let mut q = self.inner.lock().unwrap();
        q.pods.remove(key);
        q.unschedulable.remove(key);
    }

    /// The next pod to schedule, if one is ready at `now` (marks it in flight).
    pub fn pop_ready(&self, now: Instant) -> Option<QueuedPod> {
        let mut q = self.inner.lock().unwrap();
        q.flush_backoff(now);
        while let Some(e) = q.active.pop() {
            let cycle = q.scheduling_cycle + 1;
            let Some(qp) = q.pods.get_mut(&e.key) else {
                continue;
            };
            if qp.seq != e.seq || qp.at != Where::Active {
                continue;
            }
            qp.at = Where::InFlight;
            qp.attempts += 1;
            qp.cycle = cycle;
            let out = qp.clone();
            q.scheduling_cycle = cycle;
            return Some(out);
        }
        None
    }

    /// Waits for the next pod to schedule.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            let notified = self.notify.notified();
            if let Some(p) = self.pop_ready(Instant::now()) {
                return p;
            }
            let wake = self.next_backoff_expiry();
            let sleep = wake
                .map(|w| w.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn next_backoff_expiry(&self) -> Option<Instant> {
        let q = self.inner.lock().unwrap();
        q.backoff.peek().map(|Reverse((e, _, _))| *e)
    }

    /// The pod was scheduled (and bound or being bound): it leaves the queue.
    pub fn done(&self, key: &str) {
        let mut q = self.inner.lock().unwrap();
        if q.pods.get(key).is_some_and(|p| p.at == Where::InFlight) {
            q.pods.remove(key);
        }
    }

    /// No node fits the pod popped in its `cycle`: it waits for a cluster event, unless one
    /// came while it was being scheduled, in which case it only backs off.
    pub fn add_unschedulable(&self, key: &str, now: Instant) {
        let mut q = self.inner.lock().unwrap();
        let move_cycle = q.move_request_cycle;
        let Some(qp) = q.pods.get_mut(key) else {
            return;
        };
        if qp.at != Where::InFlight {
            return;
        }
        qp.failed_at = Some(now);
        if move_cycle >= qp.cycle {
            q.push_backoff(key);
        } else {
            qp.at = Where::Unschedulable;
            q.unschedulable.insert(key.to_string());
        }
        drop(q);
        self.notify.notify_one();
    }

    /// The attempt failed for another reason (an API error): retry after the backoff.
    pub fn add_backoff(&self, key: &str, now: Instant) {
        let mut q = self.inner.lock().unwrap();
        let Some(qp) = q.pods.get_mut(key) else {
            return;
        };
        qp.failed_at = Some(now);
        q.push_backoff(key);
        drop(q);
        self.notify.notify_one();
    }

    /// A cluster event may have made unschedulable pods schedulable: move them all to the
    /// backoff queue (still backing off) or the active queue. Upstream's
    /// `MoveAllToActiveOrBackoffQueue`.
    pub fn move_all_to_active_or_backoff(&self, now: Instant) {
        let mut q = self.inner.lock().unwrap();
        q.move_request_cycle = q.scheduling_cycle;
        if q.unschedulable.is_empty() {
            return;
        }
        let keys: Vec<String> = q.unschedulable.drain().collect();
        for k in &keys {
            q.requeue(k, now);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Retries pods unschedulable for longer than [`UNSCHEDULABLE_MAX_DURATION`].
    pub fn flush_unschedulable_left_over(&self, now: Instant) {
        let mut q = self.inner.lock().unwrap();
        let keys: Vec<String> = q
            .unschedulable
            .iter()
            .filter_map(|k| q.pods.get(k).map(|p| (k, p)))
            .filter(|(_, p)| {
                p.at == Where::Unschedulable
                    && p.failed_at.is_some_and(|f| {
                        now.saturating_duration_since(f) > UNSCHEDULABLE_MAX_DURATION
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            q.requeue(k, now);
        }
        drop(q);
        if !keys.is_empty() {
            self.notify.notify_one();
        }
    }

    /// Where the pod `key` is, if queued.
    pub fn position(&self, key: &str) -> Option<Where> {
        self.inner.lock().unwrap().pods.get(key).map(|p| p.at)
    }

    /// How many pods are queued (any sub-queue or in flight).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().pods.len()
    }

    /// Whether no pod is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod_named;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(pod_named(name, json!({}), json!({"priority": priority})))
    }

    #[test]
    fn backoff_durations() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn active_order_is_priority_then_age() {
        let q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("low-old", 0), t);
        q.add_or_update(p("high", 10), t + Duration::from_millis(1));
        q.add_or_update(p("low-new", 0), t + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| q.pop_ready(t + Duration::from_secs(1)))
            .map(|qp| pod_key(&qp.pod))
            .collect();
        assert_eq!(
            order,
            vec!["default/high", "default/low-old", "default/low-new"]
        );
    }

    #[test]
    fn unschedulable_waits_for_an_event_then_backs_off() {
        let q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        let a = q.pop_ready(t).unwrap();
        assert_eq!(a.attempts, 1);
        q.add_unschedulable("default/a", t);
        assert_eq!(q.position("default/a"), Some(Where::Unschedulable));
        // Time alone does not bring it back (until the leftover flush).
        assert!(q.pop_ready(t + Duration::from_secs(30)).is_none());
        // A node event half a second later: still backing off (1 s after the first failure).
        q.move_all_to_active_or_backoff(t + Duration::from_millis(500));
        assert_eq!(q.position("default/a"), Some(Where::Backoff));
        assert!(q.pop_ready(t + Duration::from_millis(900)).is_none());
        let a = q.pop_ready(t + Duration::from_millis(1000)).unwrap();
        assert_eq!(a.attempts, 2);
        // Second failure: 2 s backoff; an event after it expired goes straight to active.
        q.add_unschedulable("default/a", t + Duration::from_secs(2));
        q.move_all_to_active_or_backoff(t + Duration::from_secs(5));
        assert_eq!(q.position("default/a"), Some(Where::Active));
    }

    #[test]
    fn event_during_attempt_skips_the_unschedulable_set() {
        let q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop_ready(t).unwrap();
        q.move_all_to_active_or_backoff(t); // e.g. a node was added meanwhile
        q.add_unschedulable("default/a", t);
        assert_eq!(q.position("default/a"), Some(Where::Backoff));
        assert!(q.pop_ready(t + Duration::from_millis(999)).is_none());
        assert!(q.pop_ready(t + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn leftover_flush_and_delete() {
        let q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop_ready(t).unwrap();
        q.add_unschedulable("default/a", t);
        q.flush_unschedulable_left_over(t + Duration::from_secs(60));
        assert_eq!(q.position("default/a"), Some(Where::Unschedulable));
        q.flush_unschedulable_left_over(t + Duration::from_secs(301));
        assert_eq!(q.position("default/a"), Some(Where::Active));
        q.delete("default/a");
        assert!(q.pop_ready(t + Duration::from_secs(302)).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn update_of_unschedulable_pod_requeues_it() {
        let q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop_ready(t).unwrap();
        q.add_unschedulable("default/a", t);
        q.add_or_update(p("a", 0), t + Duration::from_secs(3));
        assert_eq!(q.position("default/a"), Some(Where::Active));
        q.pop_ready(t + Duration::from_secs(3)).unwrap();
        q.done("default/a");
        assert!(q.is_empty());
    }
}
