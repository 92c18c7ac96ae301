//! Tests of the embedded store: the shared conformance suite plus what only a local,
//! crash-safe store has to prove (reopen, torn tails, snapshots, group commit, kill -9).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::*;
use crate::{Event, conformance};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    conformance::run_all(store).await;
}

#[tokio::test]
async fn reopen_keeps_keys_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for i in 0..50 {
        store.create(&format!("/r/{i:02}"), b("v")).await.unwrap();
    }
    store.update("/r/07", b("seven"), None).await.unwrap();
    store.delete("/r/08", None).await.unwrap();
    let (before, rev) = store.list("/").await.unwrap();
    assert_eq!(rev, 52);
    store.close().await;
    assert!(store.create("/r/after-close", b("x")).await.is_err());
    drop(store);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (after, rev2) = store.list("/").await.unwrap();
    assert_eq!(after, before);
    assert_eq!(rev2, rev);
    assert_eq!(store.create("/r/new", b("n")).await.unwrap(), rev + 1);
    // History before the restart is gone.
    assert!(matches!(
        store.watch("/", rev - 1).await.err(),
        Some(Error::Compacted { compacted, .. }) if compacted == rev
    ));
    assert!(store.watch("/", rev).await.is_ok());
}

#[tokio::test]
async fn torn_tail_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for i in 0..10 {
        store.create(&format!("/t/{i}"), b("v")).await.unwrap();
    }
    store.close().await;
    drop(store);
    let seg = segments(dir.path()).pop().unwrap();
    let good = std::fs::metadata(&seg).unwrap().len();
    // A record header promising more bytes than follow, as a crash mid-write leaves it.
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'p', b'a', b'r'])
        .unwrap();
    drop(f);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), good);
    assert_eq!(
        store.list("/t/").await.unwrap(),
        (store.list("/t/").await.unwrap().0, 10)
    );
    assert_eq!(store.create("/t/next", b("n")).await.unwrap(), 11);
    store.close().await;
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.list("/t/").await.unwrap().0.len(), 11);
}

#[tokio::test]
async fn garbled_last_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for i in 0..5 {
        store.create(&format!("/g/{i}"), b("value")).await.unwrap();
    }
    store.close().await;
    drop(store);
    let seg = segments(dir.path()).pop().unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let n = data.len();
    data[n - 1] ^= 0xff;
    std::fs::write(&seg, &data).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 4);
    assert_eq!(store.get("/g/4").await.unwrap(), None);
    assert!(store.get("/g/3").await.unwrap().is_some());
}

#[tokio::test]
async fn snapshot_rotation_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        snapshot_after_bytes: 8 * 1024,
        ..Options::default()
    };
    let store = EmbeddedStore::open_with(dir.path(), opts).unwrap();
    let value = Bytes::from(vec![b'x'; 100]);
    for i in 0..600 {
        let key = format!("/s/{:03}", i % 300);
        if i < 300 {
            store.create(&key, value.clone()).await.unwrap();
        } else if i % 3 == 0 {
            store.delete(&key, None).await.unwrap();
        } else {
            store
                .update(&key, Bytes::from(format!("u{i}")), None)
                .await
                .unwrap();
        }
    }
    let (before, rev) = store.list("/").await.unwrap();
    assert_eq!(rev, 600);
    store.close().await;
    drop(store);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".snap")), "{names:?}");
    // 600 records of ~130 bytes would be ~10 segments without cleanup.
    assert!(segments(dir.path()).len() <= 3, "{names:?}");

    let store = EmbeddedStore::open_with(dir.path(), opts).unwrap();
    let (after, rev2) = store.list("/").await.unwrap();
    assert_eq!(rev2, rev);
    assert_eq!(after, before);
    assert_eq!(store.create("/s/new", b("n")).await.unwrap(), rev + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..200 {
                revs.push(
                    s.create(&format!("/c/{t:02}/{i:03}"), b("v"))
                        .await
                        .unwrap(),
                );
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            r.windows(2).all(|w| w[0] < w[1]),
            "one writer's revisions increase"
        );
        revs.extend(r);
    }
    revs.sort();
    assert_eq!(revs, (1..=3200).collect::<Vec<i64>>());
    store.close().await;
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (kvs, rev) = store.list("/c/").await.unwrap();
    assert_eq!((kvs.len(), rev), (3200, 3200));
}

#[tokio::test]
async fn conditional_writes_in_one_batch_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let r = store.create("/cas/k", b("0")).await.unwrap();
    // Ten racing compare-and-swaps on the same revision: exactly one wins.
    let results = futures::future::join_all(
        (0..10).map(|i| store.update("/cas/k", Bytes::from(i.to_string()), Some(r))),
    )
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::Conflict { .. }))
    );
}

#[tokio::test]
async fn slow_watcher_catches_up_from_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut w = store.watch("/slow/", 0).await.unwrap();
    let n = watch::CHANNEL_BATCHES as i64 + 100;
    for i in 0..n {
        store
            .create(&format!("/slow/{i:05}"), b("v"))
            .await
            .unwrap();
    }
    for rev in 1..=n {
        match w.next().await {
            Some(Ok(e)) => assert_eq!(e.revision(), rev),
            other => panic!("at {rev}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn too_slow_watcher_ends_with_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        retention: Retention {
            keep_events: 10,
            keep_for: Duration::ZERO,
            max_events: 100,
        },
        ..Options::default()
    };
    let store = EmbeddedStore::open_with(dir.path(), opts).unwrap();
    let mut w = store.watch("/slow/", 0).await.unwrap();
    for i in 0..watch::CHANNEL_BATCHES + 100 {
        store
            .create(&format!("/slow/{i:05}"), b("v"))
            .await
            .unwrap();
    }
    assert!(matches!(w.next().await, Some(Err(Error::Compacted { .. }))));
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn watch_from_future_revision_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut w = store.watch("/f/", 2).await.unwrap();
    for k in ["/f/1", "/f/2", "/f/3"] {
        store.create(k, b("v")).await.unwrap();
    }
    match w.next().await {
        Some(Ok(Event::Put { kv, .. })) => assert_eq!(kv.mod_revision, 3),
        other => panic!("{other:?}"),
    }
}

const CRASH_CHILD_ENV: &str = "RKUBE_STORE_CRASH_CHILD_DIR";

/// Not a test on its own: the child of [`acknowledged_writes_survive_kill_9`]. It writes until
/// killed, printing every acknowledged key.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let s = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let key = format!("/crash/{t}/{i:08}");
                        let rev = s.create(&key, Bytes::from(key.clone())).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {key} {rev}");
                        let _ = out.flush();
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "embedded::tests::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut parts = rest.split(' ');
                if let (Some(k), Some(r)) = (parts.next(), parts.next())
                    && let Ok(r) = r.parse::<i64>()
                {
                    let _ = tx.send((k.to_string(), r));
                }
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.len() < 3000 && Instant::now() < deadline {
        if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.push(a);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    assert!(
        acked.len() >= 100,
        "child acknowledged only {} writes",
        acked.len()
    );

    let store = EmbeddedStore::open(dir.path()).unwrap();
    for (key, rev) in &acked {
        let kv = store.get(key).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!((kv.mod_revision, kv.value.as_ref()), (*rev, key.as_bytes()));
    }
    eprintln!(
        "kill -9 test: {} acknowledged writes, all present",
        acked.len()
    );
    let max = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(store.current_revision().await.unwrap() >= max);
}
