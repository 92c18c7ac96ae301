//! API server benchmark: `cargo build --release --bin rkube && cargo bench -p rkube-bench`.
//!
//! Runs `target/release/rkube server`, one fresh data dir and free port per scenario, and
//! talks HTTPS to it as the admin (client certificate from the kubeconfig it writes), one
//! keep-alive HTTP/1.1 connection per client. Prints a markdown table: start-up time, create
//! rate and latency (beside the raw fdatasync latency of the data dir's disk), GET latency,
//! LIST of 10,000 ConfigMaps, watch delivery latency and the server's RSS idle and with
//! 100,000 ConfigMaps. With `RKUBE_BENCH_ETCD=host:port` the create, GET and LIST scenarios
//! also run against that etcd. Figures, not assertions: it never fails on speed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rkube_bench::client::{Conn, Tls};
use rkube_bench::server::{Server, rkube_binary};
use rkube_bench::stats::{fdatasync_p50, mib, ms, percentile, rate};
use serde_json::json;
use tokio::sync::mpsc;

/// Start-ups measured (the median is reported).
const STARTS: usize = 5;
/// Creates per create-rate run.
const CREATES: usize = 5_000;
/// Concurrent clients of the concurrent runs.
const CLIENTS: usize = 16;
/// GETs of one object.
const GETS: usize = 2_000;
/// Objects in the listed namespace, and LISTs timed.
const LIST_OBJECTS: usize = 10_000;
const LISTS: usize = 10;
/// Watch events timed.
const WATCH_EVENTS: usize = 500;
/// Objects created before the second RSS reading.
const RSS_OBJECTS: usize = 100_000;
/// fdatasync probes of the data dir's disk.
const FSYNCS: usize = 500;

/// One measured figure: what, and its value.
type Figure = (String, String);

/// Spawns a server (on etcd when `etcd` is given), waits until it is ready and returns it
/// with the admin's TLS settings.
async fn started(etcd: Option<&str>) -> anyhow::Result<(Server, Tls)> {
    let mut server = Server::spawn(etcd)?;
    server.wait_ready().await?;
    let tls = server.admin()?;
    Ok((server, tls))
}

/// A namespace name unique to this process and scenario (etcd keeps data across runs).
fn namespace(scenario: &str) -> String {
    format!("bench-{}-{scenario}", std::process::id())
}

/// Creates namespace `ns`.
async fn create_namespace(tls: &Tls, ns: &str) -> anyhow::Result<()> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    let mut conn = tls.connect().await?;
    conn.expect(
        StatusCode::CREATED,
        Method::POST,
        "/api/v1/namespaces",
        Some(Bytes::from(body.to_string())),
    )
    .await?;
    Ok(())
}

/// The JSON of a small ConfigMap called `name`.
fn configmap(name: &str) -> Bytes {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"key": "value"},
    });
    Bytes::from(cm.to_string())
}

/// Creates ConfigMaps `{prefix}-{first}` … `{prefix}-{first+count-1}` in `ns` on `conn`, one
/// after another; returns each create's latency.
async fn create_series(
    conn: &mut Conn,
    ns: &str,
    prefix: &str,
    first: usize,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let mut latencies = Vec::with_capacity(count);
    for i in first..first + count {
        let body = configmap(&format!("{prefix}-{i}"));
        let t = Instant::now();
        conn.expect(StatusCode::CREATED, Method::POST, &path, Some(body))
            .await?;
        latencies.push(t.elapsed());
    }
    Ok(latencies)
}

/// Creates `total` ConfigMaps in `ns` from `clients` concurrent clients, each on its own
/// connection (opened before the clock starts); returns the wall time and all latencies.
async fn create_many(
    tls: &Tls,
    ns: &str,
    clients: usize,
    total: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(tls.connect().await?);
    }
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let share = total / clients + usize::from(c < total % clients);
            let ns = ns.to_string();
            tokio::spawn(
                async move { create_series(&mut conn, &ns, &format!("cm{c}"), 0, share).await },
            )
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((start.elapsed(), latencies))
}

/// Start-up: spawn → first 200 from /readyz, and spawn → "ready:" line; medians of
/// [`STARTS`] fresh servers.
async fn startup() -> anyhow::Result<Vec<Figure>> {
    let (mut readyz, mut line) = (Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let mut server = Server::spawn(None)?;
        let s = server.wait_ready().await?;
        readyz.push(s.readyz);
        line.push(s.ready_line);
    }
    Ok(vec![
        (
            format!("start-up: spawn → /readyz 200 (median of {STARTS})"),
            ms(percentile(&readyz, 0.5)),
        ),
        (
            format!("start-up: spawn → \"ready:\" line (median of {STARTS})"),
            ms(percentile(&line, 0.5)),
        ),
    ])
}

/// Create rate and latency from one client, the rate from [`CLIENTS`] clients, and (on the
/// embedded store, given its `data_dir`) the raw fdatasync latency of that disk.
async fn creates(tls: &Tls, data_dir: Option<&std::path::Path>) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    if let Some(dir) = data_dir {
        let p50 = fdatasync_p50(dir, FSYNCS)?;
        figures.push((
            "raw 4 KiB write + fdatasync, data dir's disk: p50".into(),
            ms(p50),
        ));
    }
    let ns = namespace("create1");
    create_namespace(tls, &ns).await?;
    let (wall, lat) = create_many(tls, &ns, 1, CREATES).await?;
    figures.push((
        format!("creates/s, 1 client ({CREATES})"),
        rate(CREATES, wall),
    ));
    figures.push((
        "create latency, 1 client: p50 / p99".into(),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));
    let ns = namespace("create16");
    create_namespace(tls, &ns).await?;
    let (wall, lat) = create_many(tls, &ns, CLIENTS, CREATES).await?;
    figures.push((
        format!("creates/s, {CLIENTS} clients ({CREATES})"),
        rate(CREATES, wall),
    ));
    figures.push((
        format!("create latency, {CLIENTS} clients: p50 / p99"),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    ));
    Ok(figures)
}

/// GET of one ConfigMap, [`GETS`] times on one connection after a short warm-up.
async fn get(tls: &Tls) -> anyhow::Result<Vec<Figure>> {
    let ns = namespace("get");
    create_namespace(tls, &ns).await?;
    let mut conn = tls.connect().await?;
    create_series(&mut conn, &ns, "one", 0, 1).await?;
    let path = format!("/api/v1/namespaces/{ns}/configmaps/one-0");
    let mut lat = Vec::with_capacity(GETS);
    for i in 0..GETS + 100 {
        let t = Instant::now();
        conn.expect(StatusCode::OK, Method::GET, &path, None)
            .await?;
        if i >= 100 {
            lat.push(t.elapsed());
        }
    }
    Ok(vec![(
        format!("GET one ConfigMap: p50 / p99 ({GETS})"),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    )])
}

/// LIST of [`LIST_OBJECTS`] ConfigMaps in one namespace: time to the full body, median of
/// [`LISTS`] after one warm-up LIST whose item count is checked.
async fn list(tls: &Tls) -> anyhow::Result<Vec<Figure>> {
    let ns = namespace("list");
    create_namespace(tls, &ns).await?;
    create_many(tls, &ns, CLIENTS, LIST_OBJECTS).await?;
    let mut conn = tls.connect().await?;
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let first = conn
        .expect(StatusCode::OK, Method::GET, &path, None)
        .await?;
    let doc: serde_json::Value = serde_json::from_slice(&first)?;
    // Every namespace also holds the `kube-root-ca.crt` ConfigMap the cluster publishes.
    let items = doc["items"].as_array().map_or(0, |i| {
        i.iter()
            .filter(|o| o["metadata"]["name"] != "kube-root-ca.crt")
            .count()
    });
    anyhow::ensure!(items == LIST_OBJECTS, "LIST returned {items} items");
    let mut lat = Vec::with_capacity(LISTS);
    for _ in 0..LISTS {
        let t = Instant::now();
        conn.expect(StatusCode::OK, Method::GET, &path, None)
            .await?;
        lat.push(t.elapsed());
    }
    Ok(vec![(
        format!("LIST {LIST_OBJECTS} ConfigMaps, full body: p50 of {LISTS}"),
        format!(
            "{} ({:.1} MB)",
            ms(percentile(&lat, 0.5)),
            first.len() as f64 / 1e6
        ),
    )])
}

/// The name of the object of an ADDED event line of a watch stream.
fn added_name(line: &[u8]) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(line).ok()?;
    if event["type"] != "ADDED" {
        return None;
    }
    event["object"]["metadata"]["name"]
        .as_str()
        .map(String::from)
}

/// Reads a watch response body, sending each ADDED object's name with the instant its
/// bytes were read.
async fn read_watch(
    mut body: hyper::body::Incoming,
    tx: mpsc::UnboundedSender<(String, Instant)>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let at = Instant::now();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(name) = added_name(&line) {
                tx.send((name, at))?;
            }
        }
    }
    Ok(())
}

/// Watch delivery: a watch open on the namespace's ConfigMaps, then creates one by one; time
/// from each create's response to its event being read (zero if the event came first).
async fn watch() -> anyhow::Result<Vec<Figure>> {
    let (_server, tls) = started(None).await?;
    let ns = namespace("watch");
    create_namespace(&tls, &ns).await?;
    let mut watcher = tls.connect().await?;
    let path = format!("/api/v1/namespaces/{ns}/configmaps?watch=true");
    let resp = watcher.send(Method::GET, &path, None).await?;
    anyhow::ensure!(resp.status() == StatusCode::OK, "watch: {}", resp.status());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_watch(resp.into_body(), tx));
    let mut conn = tls.connect().await?;
    let mut lat = Vec::with_capacity(WATCH_EVENTS);
    for i in 0..WATCH_EVENTS + 20 {
        create_series(&mut conn, &ns, "w", i, 1).await?;
        let created = Instant::now();
        let want = format!("w-{i}");
        let seen = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
            let (name, at) = next.ok_or_else(|| anyhow::anyhow!("watch stream ended"))?;
            if name == want {
                break at;
            }
        };
        if i >= 20 {
            lat.push(seen.saturating_duration_since(created));
        }
    }
    reader.abort();
    Ok(vec![(
        format!("watch delivery, create response → event read: p50 / p99 ({WATCH_EVENTS})"),
        format!(
            "{} / {}",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        ),
    )])
}

/// Server RSS right after start (1 s after ready) and after [`RSS_OBJECTS`] small
/// ConfigMaps created by [`CLIENTS`] clients (1 s after the last).
async fn rss() -> anyhow::Result<Vec<Figure>> {
    let (server, tls) = started(None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.rss_kib()?;
    let ns = namespace("rss");
    create_namespace(&tls, &ns).await?;
    let (wall, _) = create_many(&tls, &ns, CLIENTS, RSS_OBJECTS).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let full = server.rss_kib()?;
    Ok(vec![
        ("server RSS, idle after start".into(), mib(idle)),
        (
            format!("server RSS with {RSS_OBJECTS} ConfigMaps"),
            format!("{} (created at {})", mib(full), rate(RSS_OBJECTS, wall)),
        ),
    ])
}

/// Runs `scenario` on a freshly started embedded-store server, given its data dir and the
/// admin's TLS settings.
async fn on_fresh_server<F, Fut>(scenario: F) -> anyhow::Result<Vec<Figure>>
where
    F: FnOnce(std::path::PathBuf, Tls) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<Figure>>>,
{
    let (server, tls) = started(None).await?;
    scenario(server.data_dir().to_path_buf(), tls).await
}

/// The create, GET and LIST scenarios on one server backed by the etcd at `endpoint` (one
/// start only: rkube does not yet start twice on the same etcd, its bootstrap fails to
/// re-allocate the `kubernetes` Service IP).
async fn on_etcd(endpoint: &str) -> anyhow::Result<Vec<Figure>> {
    let (_server, tls) = started(Some(endpoint)).await?;
    let mut figures = creates(&tls, None).await?;
    figures.extend(get(&tls).await?);
    figures.extend(list(&tls).await?);
    Ok(figures)
}

/// The etcd endpoint of `$RKUBE_BENCH_ETCD` (`host:port`, `etcd://` optional).
fn etcd_endpoint() -> Option<String> {
    let v = std::env::var("RKUBE_BENCH_ETCD").ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    Some(if v.starts_with("etcd://") {
        v.to_string()
    } else {
        format!("etcd://{v}")
    })
}

/// Runs one scenario, logging its progress on stderr.
async fn step<F>(name: &str, run: F) -> anyhow::Result<Vec<Figure>>
where
    F: std::future::Future<Output = anyhow::Result<Vec<Figure>>>,
{
    eprintln!("rkube-bench: {name} …");
    let t = Instant::now();
    let figures = run.await?;
    eprintln!(
        "rkube-bench: {name} done in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(figures)
}

/// Prints the markdown table: one row per figure, an etcd column when etcd was measured.
fn print_table(embedded: &[Figure], etcd: Option<&[Figure]>) {
    match etcd {
        Some(_) => {
            println!("| figure | embedded store | etcd |");
            println!("|---|---|---|");
        }
        None => {
            println!("| figure | embedded store |");
            println!("|---|---|");
        }
    }
    for (label, value) in embedded {
        match etcd {
            Some(e) => {
                let other = e.iter().find(|(l, _)| l == label).map_or("–", |(_, v)| v);
                println!("| {label} | {value} | {other} |");
            }
            None => println!("| {label} | {value} |"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = rkube_binary()?;
    eprintln!("rkube-bench: benchmarking {}", bin.display());
    let started_at = Instant::now();
    let mut embedded = Vec::new();
    embedded.extend(step("start-up", startup()).await?);
    embedded.extend(
        step(
            "creates",
            on_fresh_server(|s, t| async move { creates(&t, Some(&s)).await }),
        )
        .await?,
    );
    embedded.extend(step("get", on_fresh_server(|_, t| async move { get(&t).await })).await?);
    embedded.extend(
        step(
            "list",
            on_fresh_server(|_, t| async move { list(&t).await }),
        )
        .await?,
    );
    embedded.extend(step("watch", watch()).await?);
    embedded.extend(step("rss", rss()).await?);
    let etcd = match etcd_endpoint() {
        Some(ep) => Some(step("etcd creates, get, list", on_etcd(&ep)).await?),
        None => {
            eprintln!("rkube-bench: set RKUBE_BENCH_ETCD=host:port to measure etcd too");
            None
        }
    };
    println!();
    print_table(&embedded, etcd.as_deref());
    println!();
    println!("(whole bench: {:.0} s)", started_at.elapsed().as_secs_f64());
    Ok(())
}
