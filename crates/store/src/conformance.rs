//! One behaviour suite for every [`Store`] backend.
//!
//! Each check is an async function taking `Arc<dyn Store>`; [`run_all`] runs them in order.
//! Checks use their own key prefixes, so they can share a store (a real etcd keeps its data
//! between checks); only [`watch_after_compact`] affects everything, so it runs last. The
//! checks never assume absolute revisions (a fresh etcd starts at 1, the embedded store at 0).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, Store, WatchStream};

/// How long a check waits for an expected watch event.
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(w: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_WAIT, w.next()).await {
        Ok(Some(Ok(e))) => e,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

async fn nothing_more(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

/// Runs every check, compaction last.
pub(crate) async fn run_all(s: Arc<dyn Store>) {
    create_and_get(s.clone()).await;
    update_conditions(s.clone()).await;
    delete_conditions(s.clone()).await;
    list_prefix_isolation(s.clone()).await;
    revisions_increase(s.clone()).await;
    watch_from_now(s.clone()).await;
    watch_replays_past(s.clone()).await;
    watch_prefix_filter(s.clone()).await;
    watch_prev_values(s.clone()).await;
    watch_after_compact(s.clone()).await;
}

/// create, AlreadyExists, get, get of a missing key.
pub(crate) async fn create_and_get(s: Arc<dyn Store>) {
    let rev = s.create("/cg/a", b("one")).await.unwrap();
    let kv = s.get("/cg/a").await.unwrap().expect("created key");
    assert_eq!(kv.key, "/cg/a");
    assert_eq!(kv.value, b("one"));
    assert_eq!(kv.create_revision, rev);
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(
        s.create("/cg/a", b("two")).await,
        Err(Error::AlreadyExists("/cg/a".into()))
    );
    assert_eq!(s.get("/cg/a").await.unwrap().unwrap().value, b("one"));
    assert_eq!(s.get("/cg/missing").await.unwrap(), None);
    // Re-create after delete gets a new create revision.
    s.delete("/cg/a", None).await.unwrap();
    let rev2 = s.create("/cg/a", b("three")).await.unwrap();
    assert!(rev2 > rev);
    assert_eq!(s.get("/cg/a").await.unwrap().unwrap().create_revision, rev2);
}

/// update with the right revision, a stale one, unconditionally, and of a missing key.
pub(crate) async fn update_conditions(s: Arc<dyn Store>) {
    let r1 = s.create("/up/k", b("v1")).await.unwrap();
    let r2 = s.update("/up/k", b("v2"), Some(r1)).await.unwrap();
    assert!(r2 > r1);
    let kv = s.get("/up/k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (b("v2"), r1, r2)
    );
    assert_eq!(
        s.update("/up/k", b("stale"), Some(r1)).await,
        Err(Error::Conflict {
            key: "/up/k".into(),
            current: r2
        })
    );
    assert_eq!(s.get("/up/k").await.unwrap().unwrap().value, b("v2"));
    let r3 = s.update("/up/k", b("v3"), None).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(s.get("/up/k").await.unwrap().unwrap().mod_revision, r3);
    assert_eq!(
        s.update("/up/missing", b("x"), None).await,
        Err(Error::NotFound("/up/missing".into()))
    );
    assert_eq!(
        s.update("/up/missing", b("x"), Some(r1)).await,
        Err(Error::NotFound("/up/missing".into()))
    );
    assert_eq!(s.get("/up/missing").await.unwrap(), None);
}

/// delete with a stale revision, the right one, unconditionally, and of a missing key.
pub(crate) async fn delete_conditions(s: Arc<dyn Store>) {
    let r1 = s.create("/del/a", b("a")).await.unwrap();
    let r2 = s.update("/del/a", b("a2"), None).await.unwrap();
    assert_eq!(
        s.delete("/del/a", Some(r1)).await,
        Err(Error::Conflict {
            key: "/del/a".into(),
            current: r2
        })
    );
    let (prev, rd) = s.delete("/del/a", Some(r2)).await.unwrap();
    assert!(rd > r2);
    assert_eq!((prev.key.as_str(), prev.value.clone()), ("/del/a", b("a2")));
    assert_eq!((prev.create_revision, prev.mod_revision), (r1, r2));
    assert_eq!(s.get("/del/a").await.unwrap(), None);
    assert_eq!(
        s.delete("/del/a", None).await,
        Err(Error::NotFound("/del/a".into()))
    );
    assert_eq!(
        s.delete("/del/a", Some(rd)).await,
        Err(Error::NotFound("/del/a".into()))
    );
    s.create("/del/b", b("b")).await.unwrap();
    let (prev, _) = s.delete("/del/b", None).await.unwrap();
    assert_eq!(prev.value, b("b"));
}

/// list returns exactly the prefix, in key order, at the current revision.
pub(crate) async fn list_prefix_isolation(s: Arc<dyn Store>) {
    for k in ["/ls/a/b/2", "/ls/a/bc/1", "/ls/a/b/1", "/ls/a/b", "/ls/a/c"] {
        s.create(k, b(k)).await.unwrap();
    }
    let (kvs, rev) = s.list("/ls/a/b/").await.unwrap();
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/ls/a/b/1", "/ls/a/b/2"]);
    assert_eq!(rev, s.current_revision().await.unwrap());
    let (kvs, _) = s.list("/ls/a/bc/").await.unwrap();
    assert_eq!(kvs.len(), 1);
    let (kvs, _) = s.list("/ls/a/").await.unwrap();
    let keys: Vec<_> = kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/ls/a/b", "/ls/a/b/1", "/ls/a/b/2", "/ls/a/bc/1", "/ls/a/c"]
    );
    assert_eq!(kvs[0].value, b("/ls/a/b"));
    let (kvs, _) = s.list("/ls/none/").await.unwrap();
    assert!(kvs.is_empty());
    // More keys than one etcd page, to exercise pagination.
    for i in 0..1500 {
        s.create(&format!("/ls/many/{i:05}"), b("x")).await.unwrap();
    }
    let (kvs, _) = s.list("/ls/many/").await.unwrap();
    assert_eq!(kvs.len(), 1500);
    assert!(kvs.windows(2).all(|w| w[0].key < w[1].key));
}

/// Every change gets a new, higher revision equal to the key's mod_revision.
pub(crate) async fn revisions_increase(s: Arc<dyn Store>) {
    let mut last = s.current_revision().await.unwrap();
    for i in 0..20 {
        let key = format!("/rev/{}", i % 5);
        let rev = if i < 5 {
            s.create(&key, b("c")).await.unwrap()
        } else {
            s.update(&key, b("u"), None).await.unwrap()
        };
        assert!(rev > last, "revision {rev} after {last}");
        assert_eq!(s.get(&key).await.unwrap().unwrap().mod_revision, rev);
        assert_eq!(s.current_revision().await.unwrap(), rev);
        last = rev;
    }
    let (_, rev) = s.delete("/rev/0", None).await.unwrap();
    assert!(rev > last);
    assert_eq!(s.current_revision().await.unwrap(), rev);
}

/// A watch from now sees later changes only.
pub(crate) async fn watch_from_now(s: Arc<dyn Store>) {
    s.create("/wn/old", b("old")).await.unwrap();
    let mut w = s.watch("/wn/", 0).await.unwrap();
    let r1 = s.create("/wn/a", b("a")).await.unwrap();
    let r2 = s.update("/wn/a", b("a2"), Some(r1)).await.unwrap();
    let (_, r3) = s.delete("/wn/a", None).await.unwrap();
    let e = next(&mut w).await;
    assert!(
        matches!(&e, Event::Put { kv, prev: None } if kv.key == "/wn/a" && kv.mod_revision == r1)
    );
    let e = next(&mut w).await;
    assert!(matches!(&e, Event::Put { kv, .. } if kv.mod_revision == r2 && kv.value == b("a2")));
    let e = next(&mut w).await;
    assert!(
        matches!(&e, Event::Delete { revision, prev } if *revision == r3 && prev.key == "/wn/a")
    );
    nothing_more(&mut w).await;
}

/// A watch from a past revision replays what happened since, then continues live.
pub(crate) async fn watch_replays_past(s: Arc<dyn Store>) {
    let r0 = s.create("/wp/a", b("1")).await.unwrap();
    let r1 = s.create("/wp/b", b("2")).await.unwrap();
    let r2 = s.update("/wp/a", b("3"), None).await.unwrap();
    let mut w = s.watch("/wp/", r0).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), r1);
    assert_eq!(next(&mut w).await.revision(), r2);
    let r3 = s.create("/wp/c", b("4")).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.revision(), e.key()), (r3, "/wp/c"));
    let mut all = s.watch("/wp/", r0 - 1).await.unwrap();
    let revs = [
        next(&mut all).await.revision(),
        next(&mut all).await.revision(),
        next(&mut all).await.revision(),
        next(&mut all).await.revision(),
    ];
    assert_eq!(revs, [r0, r1, r2, r3]);
    nothing_more(&mut all).await;
}

/// A watch sees only its prefix (`/wf/a/b/` is not `/wf/a/bc/`).
pub(crate) async fn watch_prefix_filter(s: Arc<dyn Store>) {
    let mut w = s.watch("/wf/a/b/", 0).await.unwrap();
    s.create("/wf/a/bc/1", b("no")).await.unwrap();
    s.create("/wf/a/b", b("no")).await.unwrap();
    let r = s.create("/wf/a/b/1", b("yes")).await.unwrap();
    s.create("/wf/z", b("no")).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.key(), e.revision()), ("/wf/a/b/1", r));
    nothing_more(&mut w).await;
}

/// Updates and deletes carry the value before.
pub(crate) async fn watch_prev_values(s: Arc<dyn Store>) {
    let mut w = s.watch("/wv/", 0).await.unwrap();
    let r1 = s.create("/wv/k", b("first")).await.unwrap();
    let r2 = s.update("/wv/k", b("second"), Some(r1)).await.unwrap();
    s.delete("/wv/k", Some(r2)).await.unwrap();
    match next(&mut w).await {
        Event::Put { prev, .. } => assert_eq!(prev, None),
        e => panic!("{e:?}"),
    }
    match next(&mut w).await {
        Event::Put { kv, prev: Some(p) } => {
            assert_eq!(
                (kv.value, p.value, p.mod_revision),
                (b("second"), b("first"), r1)
            );
            assert_eq!(kv.create_revision, r1);
        }
        e => panic!("{e:?}"),
    }
    match next(&mut w).await {
        Event::Delete { prev, .. } => {
            assert_eq!((prev.value, prev.mod_revision), (b("second"), r2));
        }
        e => panic!("{e:?}"),
    }
}

/// After compaction, watching from before it fails with Compacted; from after it works.
pub(crate) async fn watch_after_compact(s: Arc<dyn Store>) {
    let r0 = s.create("/wc/a", b("1")).await.unwrap();
    let r1 = s.update("/wc/a", b("2"), None).await.unwrap();
    let r2 = s.update("/wc/a", b("3"), None).await.unwrap();
    s.compact(r1).await.unwrap();
    // Compacting again at or below is harmless.
    s.compact(r0).await.unwrap();
    let err = match s.watch("/wc/", r0 - 1).await {
        Err(e) => e,
        Ok(mut w) => match tokio::time::timeout(EVENT_WAIT, w.next()).await {
            Ok(Some(Err(e))) => e,
            other => panic!("watch from compacted history gave {other:?}"),
        },
    };
    assert!(
        matches!(err, Error::Compacted { compacted, .. } if compacted >= r1),
        "{err:?}"
    );
    let mut w = s.watch("/wc/", r1).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), r2);
    // A watch from now still works after compaction.
    let mut w = s.watch("/wc/", 0).await.unwrap();
    let r3 = s.update("/wc/a", b("4"), None).await.unwrap();
    assert_eq!(next(&mut w).await.revision(), r3);
    assert_eq!(
        s.compact(r3 + 1000).await,
        Err(Error::FutureRevision(r3 + 1000))
    );
    // Data itself is unaffected.
    assert_eq!(s.get("/wc/a").await.unwrap().unwrap().value, b("4"));
}
