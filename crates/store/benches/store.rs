//! Store benchmark: `cargo bench -p rkube-store --bench store`.
//!
//! Reports, for the embedded backend on the disk holding `STORE_BENCH_DIR` (default: the
//! current directory): raw fdatasync latency, single-writer durable create latency and rate,
//! the create rate of 16 concurrent writers, and the time to list 10,000 keys. With
//! `RKUBE_BENCH_ETCD=etcd://host:port` it reports the same create figures for that etcd.
//! Figures, not assertions: a benchmark never fails on speed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rkube_store::{EmbeddedStore, EtcdStore, Store};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fdatasync_p50(dir: &std::path::Path, n: usize) -> (Duration, Duration) {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let buf = [7u8; 200];
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

async fn single_writer(s: &Arc<dyn Store>, prefix: &str, n: usize) {
    let value = Bytes::from(vec![b'v'; 512]);
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        s.create(&format!("{prefix}/single/{i:06}"), value.clone())
            .await
            .expect("create");
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "  single writer: {n} creates, p50 {:.2} ms, p99 {:.2} ms, {:.0} creates/s",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        n as f64 / total.as_secs_f64()
    );
}

async fn concurrent_writers(s: &Arc<dyn Store>, prefix: &str, writers: usize, each: usize) {
    let value = Bytes::from(vec![b'v'; 512]);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let s = Arc::clone(s);
            let value = value.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                for i in 0..each {
                    s.create(&format!("{prefix}/multi/{w:02}/{i:06}"), value.clone())
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    let total = start.elapsed();
    println!(
        "  {writers} writers: {} creates in {:.2} s, {:.0} creates/s",
        writers * each,
        total.as_secs_f64(),
        (writers * each) as f64 / total.as_secs_f64()
    );
}

async fn list_10k(s: &Arc<dyn Store>, prefix: &str) {
    let value = Bytes::from(vec![b'v'; 512]);
    let tasks: Vec<_> = (0..50)
        .map(|w| {
            let s = Arc::clone(s);
            let value = value.clone();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                for i in 0..200 {
                    s.create(&format!("{prefix}/list/{w:02}/{i:04}"), value.clone())
                        .await
                        .expect("create");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    let mut lat = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (kvs, _) = s.list(&format!("{prefix}/list/")).await.expect("list");
        lat.push(t.elapsed());
        assert_eq!(kvs.len(), 10_000);
    }
    lat.sort();
    println!("  list of 10,000 keys: p50 {:.2} ms", ms(pct(&lat, 0.5)));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("cwd"));
    let dir = tempfile::tempdir_in(&base).expect("bench dir");
    println!("embedded store in {}", dir.path().display());

    let (p50, p99) = fdatasync_p50(dir.path(), 500);
    println!(
        "  raw write+fdatasync: p50 {:.2} ms, p99 {:.2} ms",
        ms(p50),
        ms(p99)
    );

    let store: Arc<dyn Store> = EmbeddedStore::open(&dir.path().join("data")).expect("open");
    single_writer(&store, "/bench", 1000).await;
    concurrent_writers(&store, "/bench", 16, 1000).await;
    list_10k(&store, "/bench").await;

    if let Ok(endpoint) = std::env::var("RKUBE_BENCH_ETCD") {
        println!("etcd at {endpoint}");
        let etcd: Arc<dyn Store> = EtcdStore::connect(&[endpoint]).await.expect("connect etcd");
        let prefix = format!("/bench-{}", std::process::id());
        single_writer(&etcd, &prefix, 500).await;
        concurrent_writers(&etcd, &prefix, 16, 300).await;
        list_10k(&etcd, &prefix).await;
    } else {
        println!("(set RKUBE_BENCH_ETCD=etcd://127.0.0.1:2379 to measure etcd too)");
    }
}
