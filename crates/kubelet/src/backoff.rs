//! Exponential back-off per key, as upstream's `flowcontrol.Backoff` that the kubelet uses for
//! container restarts (`CrashLoopBackOff`) and image pulls (`ImagePullBackOff`).
//!
//! Times are passed in (nanoseconds since the epoch, as CRI reports them) so the decisions are
//! testable without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upstream's initial container back-off.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `MaxContainerBackOff`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug)]
struct Entry {
    backoff: Duration,
    last_update: i64,
}

/// Back-off state for many keys (a container of a pod, an image of a pod).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Backoff {
    /// A back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// An entry untouched for twice the maximum is forgotten: a container that ran fine for
    /// 10 minutes starts again at the initial delay (upstream's `hasExpired`).
    fn expired(&self, e: &Entry, now: i64) -> bool {
        now.saturating_sub(e.last_update) > nanos(self.max) * 2
    }

    /// Records a failure at `event_time`: the first one (or the first after expiry) sets the
    /// initial delay, later ones double it up to the maximum.
    pub fn next(&self, key: &str, event_time: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match entries.get(key) {
            Some(e) if !self.expired(e, event_time) => Entry {
                backoff: (e.backoff * 2).min(self.max),
                last_update: event_time,
            },
            _ => Entry {
                backoff: self.initial,
                last_update: event_time,
            },
        };
        entries.insert(key.to_string(), entry);
    }

    /// The current delay of `key` (zero when unknown).
    pub fn get(&self, key: &str) -> Duration {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).map(|e| e.backoff).unwrap_or_default()
    }

    /// Whether `key` is still waiting out its delay counted from `event_time` (upstream's
    /// `IsInBackOffSince`).
    pub fn in_backoff_since(&self, key: &str, event_time: i64, now: i64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(e) if !self.expired(e, now) => now.saturating_sub(event_time) < nanos(e.backoff),
            _ => false,
        }
    }

    /// Forgets every key starting with `prefix` (a pod's keys when it goes away).
    pub fn forget_prefix(&self, prefix: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|k, _| !k.starts_with(prefix));
    }
}

/// A Go-style duration text as upstream prints back-off delays (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if d.subsec_millis() == 0 {
        format!("{secs}s")
    } else {
        let n = format!("{:.3}", d.as_secs_f64());
        format!("{}s", n.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn doubles_up_to_max_and_resets_after_quiet_period() {
        let b = Backoff::default();
        b.next("k", 0);
        assert_eq!(b.get("k"), Duration::from_secs(10));
        assert!(b.in_backoff_since("k", 0, 5 * S));
        assert!(!b.in_backoff_since("k", 0, 11 * S));
        let mut t = 11 * S;
        for want in [20, 40, 80, 160, 300, 300] {
            b.next("k", t);
            assert_eq!(b.get("k"), Duration::from_secs(want));
            t += S;
        }
        // Ten quiet minutes: back to the start.
        t += 601 * S;
        assert!(!b.in_backoff_since("k", t - S, t));
        b.next("k", t);
        assert_eq!(b.get("k"), Duration::from_secs(10));
    }

    #[test]
    fn unknown_key_is_not_in_backoff() {
        let b = Backoff::default();
        assert!(!b.in_backoff_since("x", 0, 0));
        b.next("pod/a", 0);
        b.next("pod/b", 0);
        b.forget_prefix("pod/");
        assert_eq!(b.get("pod/a"), Duration::ZERO);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(1200)), "1.2s");
    }
}
