//! Durability: what the server acknowledged survives a restart, a `kill -9` in the middle of a
//! stream of writes, and works the same on an external etcd.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use support::{Server, eventually, free_port};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: durable
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
"#;

/// `kind/name` → resourceVersion of every object kubectl lists in namespace `durable`
/// (plus the namespace itself).
fn versions(s: &Server) -> BTreeMap<String, String> {
    let out = s.ok(&["get", "cm,secret,deploy,svc", "-n", "durable", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    let mut m = BTreeMap::new();
    for item in list["items"].as_array().unwrap() {
        let key = format!(
            "{}/{}",
            item["kind"].as_str().unwrap(),
            item["metadata"]["name"].as_str().unwrap()
        );
        m.insert(
            key,
            item["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let ns: Value = serde_json::from_str(&s.ok(&["get", "ns", "durable", "-o", "json"])).unwrap();
    m.insert(
        "Namespace/durable".into(),
        ns["metadata"]["resourceVersion"].as_str().unwrap().into(),
    );
    m
}

fn rv_of(s: &Server, args: &[&str]) -> u64 {
    let mut a = args.to_vec();
    a.extend(["-o", "jsonpath={.metadata.resourceVersion}"]);
    s.ok(&a).trim().parse().expect("numeric resourceVersion")
}

fn populate(s: &Server) {
    s.ok(&["create", "ns", "durable"]);
    s.ok(&["create", "cm", "one", "-n", "durable", "--from-literal=a=1"]);
    s.ok(&["create", "cm", "two", "-n", "durable", "--from-literal=b=2"]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "-n",
        "durable",
        "--from-literal=p=secret",
    ]);
    s.apply(DEPLOYMENT);
    s.ok(&["label", "cm", "one", "-n", "durable", "touched=yes"]);
    s.ok(&["create", "cm", "gone", "-n", "durable"]);
    s.ok(&["delete", "cm", "gone", "-n", "durable"]);
}

fn check_populated(s: &Server) {
    let one: Value =
        serde_json::from_str(&s.ok(&["get", "cm", "one", "-n", "durable", "-o", "json"])).unwrap();
    assert_eq!(one["data"]["a"], "1", "{one}");
    assert_eq!(one["metadata"]["labels"]["touched"], "yes", "{one}");
    let sec = s.ok(&[
        "get",
        "secret",
        "s",
        "-n",
        "durable",
        "-o",
        "jsonpath={.data.p}",
    ]);
    assert_eq!(sec.trim(), "c2VjcmV0");
    let replicas = s.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "durable",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas.trim(), "2");
    s.fails(&["get", "cm", "gone", "-n", "durable"]);
}

#[test]
fn objects_survive_restart_with_same_resource_versions() {
    let mut s = Server::start();
    populate(&s);
    check_populated(&s);
    let before = versions(&s);
    assert!(
        before.contains_key("ConfigMap/one") && before.contains_key("Deployment/web"),
        "{before:?}"
    );
    let max_before = before
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .max()
        .unwrap();

    s.restart();
    check_populated(&s);
    let after = versions(&s);
    assert_eq!(
        before, after,
        "objects or resourceVersions changed across a restart"
    );

    // New writes continue with higher resourceVersions.
    s.ok(&["create", "cm", "three", "-n", "durable"]);
    let rv3 = rv_of(&s, &["get", "cm", "three", "-n", "durable"]);
    assert!(
        rv3 > max_before,
        "new resourceVersion {rv3} not above {max_before}"
    );
    s.ok(&["label", "cm", "one", "-n", "durable", "again=yes"]);
    let rv1 = rv_of(&s, &["get", "cm", "one", "-n", "durable"]);
    assert!(rv1 > rv3, "update resourceVersion {rv1} not above {rv3}");
    // A name freed before the restart can be reused.
    s.ok(&["create", "cm", "gone", "-n", "durable"]);

    // And a second restart keeps those too.
    let before = versions(&s);
    s.restart();
    assert_eq!(before, versions(&s));
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    kube::Client::try_from(cfg).expect("kube client")
}

#[test]
fn acknowledged_writes_survive_kill9() {
    let mut s = Server::start();
    s.ok(&["create", "ns", "stream"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(kube_client(&s.kubeconfig()));

    // Four concurrent writers, so that several creates are in flight at the kill. Each records
    // (name, resourceVersion, data) for every create the server acknowledged.
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "stream");
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(rt.spawn(async move {
            let mut errors = 0;
            for i in 0.. {
                if stop.load(Ordering::Relaxed) || errors > 3 {
                    break;
                }
                let name = format!("w{w}-{i}");
                let payload = format!("{w}:{i}:{}", "x".repeat(i % 200));
                let obj: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "data": {"payload": payload},
                }))
                .unwrap();
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    api.create(&PostParams::default(), &obj),
                )
                .await
                {
                    Ok(Ok(o)) => acked.lock().unwrap().push((
                        name,
                        o.metadata.resource_version.unwrap_or_default(),
                        payload,
                    )),
                    _ => errors += 1,
                }
            }
        }));
    }

    // Let a good number of writes land, then kill -9 in the middle of the stream.
    assert!(
        eventually(Duration::from_secs(30), || acked.lock().unwrap().len()
            >= 150),
        "writers too slow: {} acknowledged in 30 s",
        acked.lock().unwrap().len()
    );
    s.kill9();
    let at_kill = acked.lock().unwrap().len();
    // Writers notice the dead server and stop.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= at_kill);

    s.restart();
    let api: Api<ConfigMap> = Api::namespaced(rt.block_on(kube_client(&s.kubeconfig())), "stream");
    let list = rt
        .block_on(api.list(&ListParams::default()))
        .expect("list after restart");
    let present: BTreeMap<String, (String, String)> = list
        .items
        .into_iter()
        .map(|c| {
            let payload = c
                .data
                .and_then(|d| d.get("payload").cloned())
                .unwrap_or_default();
            (
                c.metadata.name.unwrap(),
                (c.metadata.resource_version.unwrap_or_default(), payload),
            )
        })
        .collect();
    let mut lost = Vec::new();
    for (name, rv, payload) in &acked {
        match present.get(name) {
            Some((prv, ppayload)) => {
                assert_eq!(prv, rv, "{name}: resourceVersion changed across kill -9");
                assert_eq!(ppayload, payload, "{name}: data changed across kill -9");
            }
            None => lost.push(name.clone()),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates lost after kill -9: {lost:?}",
        lost.len(),
        acked.len()
    );
    // Nothing beyond what was attempted appears, and the store is writable again with a higher
    // resourceVersion than anything acknowledged.
    assert!(
        present.len() <= acked.len() + 4,
        "{} present, {} acknowledged",
        present.len(),
        acked.len()
    );
    let max_rv = acked
        .iter()
        .map(|a| a.1.parse::<u64>().unwrap())
        .max()
        .unwrap();
    s.ok(&["create", "cm", "after", "-n", "stream"]);
    let rv = rv_of(&s, &["get", "cm", "after", "-n", "stream"]);
    assert!(
        rv > max_rv,
        "resourceVersion after recovery {rv} not above {max_rv}"
    );
}

/// A real etcd (Debian `etcd-server`) on free loopback ports in its own temp data dir.
struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let bin = std::env::var("RKUBE_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into());
        assert!(
            Path::new(&bin).exists(),
            "etcd not found at {bin}: `apt-get install etcd-server` (or set RKUBE_ETCD)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut peer = free_port();
        while peer == port {
            peer = free_port();
        }
        let client_url = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(&bin)
            .arg("--name=rkube-test")
            .arg(format!("--data-dir={}", dir.path().join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=rkube-test={peer_url}"))
            .arg("--listen-metrics-urls=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}: `apt-get install etcd-server`"));
        let mut etcd = Etcd {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = etcd.child.try_wait().unwrap() {
                panic!("etcd exited at start-up: {status}");
            }
            if ureq_health(port) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy in 30 s on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn endpoint(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }
}

/// `GET /health` on etcd's client port returns `{"health":"true"...}`.
fn ureq_health(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcd_datastore_survives_restart() {
    let etcd = Etcd::start();
    let ep = etcd.endpoint();
    let mut s = Server::start_with(&["--datastore-endpoint", &ep]);
    let ns = s.ok(&["get", "ns", "-o", "name"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{n}")), "{ns}");
    }
    populate(&s);
    check_populated(&s);
    let before = versions(&s);
    let max_before = before
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .max()
        .unwrap();

    s.restart();
    check_populated(&s);
    assert_eq!(
        before,
        versions(&s),
        "objects or resourceVersions changed across a restart on etcd"
    );
    s.ok(&["create", "cm", "three", "-n", "durable"]);
    let rv3 = rv_of(&s, &["get", "cm", "three", "-n", "durable"]);
    assert!(
        rv3 > max_before,
        "new resourceVersion {rv3} not above {max_before}"
    );

    // The data lives in etcd, not in rkube's data dir: a fresh rkube (new data dir, same etcd)
    // sees it.
    drop(s);
    let s2 = Server::start_with(&["--datastore-endpoint", &ep]);
    check_populated(&s2);
    assert!(
        s2.ok(&["get", "cm", "-n", "durable", "-o", "name"])
            .contains("configmap/three")
    );
}
