//! The whole path with the real kubectl v1.35: kubectl → apiserver (`pods/log`, `pods/exec`,
//! `pods/portforward`) → this crate's streaming server with a fake runtime.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rkube_apiserver::ApiServer;
use rkube_apiserver::pki::{Pki, PkiOptions};

fn kubectl_path() -> PathBuf {
    if let Ok(p) = std::env::var("RKUBE_KUBECTL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/kubectl");
    assert!(
        p.exists(),
        "kubectl v1.35 not found: run scripts/install-test-deps.sh (or set RKUBE_KUBECTL)"
    );
    p
}

struct Cluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    async fn start() -> (Cluster, Pki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&PkiOptions {
            dir: &dir.path().join("tls"),
            extra_sans: &[],
            token: None,
        })
        .unwrap();
        let store = rkube_store::embedded::EmbeddedStore::open(&dir.path().join("db")).unwrap();
        let authn = rkube_apiserver::authn::Authenticator {
            node_token_secret: pki.token_secret().to_string(),
            service_accounts: None,
        };
        let srv = ApiServer::new(store, authn, Default::default())
            .await
            .unwrap();
        srv.set_kubelet_client(&pki).unwrap();
        srv.set_ready();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = rkube_apiserver::server::tls_config(&pki).unwrap();
        let task = tokio::spawn(rkube_apiserver::server::serve(srv, listener, tls));
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        std::fs::write(
            &kubeconfig,
            pki.admin_kubeconfig(&format!("https://127.0.0.1:{port}")),
        )
        .unwrap();
        (
            Cluster {
                dir,
                kubeconfig,
                task,
            },
            pki,
        )
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c
    }

    async fn run(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tokio::task::spawn_blocking(move || {
            let mut child = c.spawn().unwrap();
            let mut si = child.stdin.take().unwrap();
            let feeder = std::thread::spawn(move || {
                if let Some(data) = stdin {
                    let _ = si.write_all(&data);
                }
            });
            let out = child.wait_with_output().unwrap();
            feeder.join().unwrap();
            out
        })
        .await
        .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("obj.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()]).await;
    }
}

async fn setup() -> (Cluster, support::Kubelet) {
    let (c, pki) = Cluster::start().await;
    let k = support::Kubelet::start_with_ca(Some(&pki.ca_cert_pem)).await;
    c.apply(&format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: default}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-a}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}, {{type: Hostname, address: node-a}}]
  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node-down}}
status:
  addresses: [{{type: InternalIP, address: 127.0.0.1}}]
  daemonEndpoints: {{kubeletEndpoint: {{Port: 1}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default}}
spec:
  nodeName: node-a
  containers: [{{name: app, image: busybox}}, {{name: idle, image: busybox}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: lost, namespace: default}}
spec:
  nodeName: node-down
  containers: [{{name: app, image: busybox}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: pending, namespace: default}}
spec:
  containers: [{{name: app, image: busybox}}]
"#,
        port = k.port
    ))
    .await;
    let running = r#"{"status":{"phase":"Running","containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"busybox","imageID":"","state":{"running":{"startedAt":"2026-11-22T03:50:00Z"}}},{"name":"idle","ready":false,"restartCount":0,"image":"busybox","imageID":"","state":{"waiting":{"reason":"ContainerCreating"}}}]}}"#;
    for pod in ["web", "lost"] {
        c.ok(&[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            running,
        ])
        .await;
    }
    std::fs::write(
        k.log_dir.join("app/0.log"),
        "2026-11-22T03:50:01.5Z stdout F hello\n2026-11-22T03:50:02Z stderr F world\n",
    )
    .unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_errors() {
    let (c, k) = setup().await;
    assert_eq!(c.ok(&["logs", "web", "-c", "app"]).await, "hello\nworld\n");
    assert_eq!(
        c.ok(&["logs", "web", "-c", "app", "--timestamps", "--tail=1"])
            .await,
        "2026-11-22T03:50:02Z world\n"
    );
    // follow ends once the container exits.
    k.runtime
        .exited
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        c.ok(&["logs", "-f", "web", "-c", "app"]).await,
        "hello\nworld\n"
    );

    let err = |o: Output| String::from_utf8_lossy(&o.stderr).trim().to_string();
    let o = c.run(&["logs", "web", "-c", "idle"], None).await;
    assert_eq!(
        err(o),
        "Error from server (BadRequest): container \"idle\" in pod \"web\" is waiting to start: ContainerCreating"
    );
    let o = c.run(&["logs", "web", "-c", "nope"], None).await;
    // kubectl checks the name itself first.
    assert_eq!(err(o), "error: container nope is not valid for pod web");
    let o = c
        .run(&["logs", "web", "-c", "app", "--previous"], None)
        .await;
    assert_eq!(
        err(o),
        "Error from server (BadRequest): previous terminated container \"app\" in pod \"web\" not found"
    );
    let o = c.run(&["logs", "lost"], None).await;
    let e = err(o);
    assert!(
        e.contains("Get \"https://127.0.0.1:1/containerLogs/default/lost/app\": dial tcp 127.0.0.1:1: connect: connection refused"),
        "{e}"
    );
    let o = c.run(&["exec", "pending", "--", "true"], None).await;
    let e = err(o);
    assert!(
        e.contains("pod pending does not have a host assigned"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_and_port_forward() {
    let (c, k) = setup().await;
    // Binary stdin through exec -i, to EOF.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let out = c
        .run(
            &["exec", "-i", "web", "-c", "app", "--", "cat"],
            Some(data.clone()),
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == data,
        "got {} of {} bytes",
        out.stdout.len(),
        data.len()
    );

    let out = c
        .run(&["exec", "web", "-c", "app", "--", "exit", "3"], None)
        .await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "command terminated with exit code 3"
    );
    let out = c
        .run(&["exec", "web", "-c", "app", "--", "stderr", "oops"], None)
        .await;
    assert!(out.status.success());
    assert_eq!(out.stderr, b"oops");

    // port-forward: kubectl listens locally; a connection there reaches the pod's port 80.
    let mut pf = c
        .cmd(&["port-forward", "pod/web", ":80", "-v=4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = pf.stdout.take().unwrap();
    let stderr = pf.stderr.take().unwrap();
    let stderr_log = Arc::new(std::sync::Mutex::new(stderr));
    let stderr_for_port = stderr_log.clone();
    let _guard = Kill(pf);
    let port = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).unwrap();
        // Keep draining: kubectl dies of EPIPE when it logs "Handling connection" otherwise.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        if line.is_empty() {
            let mut e = String::new();
            let _ = stderr_for_port.lock().unwrap().read_to_string(&mut e);
            panic!("kubectl port-forward printed nothing: {e}");
        }
        // "Forwarding from 127.0.0.1:NNNNN -> 80"
        line.split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"))
    })
    .await
    .unwrap();
    for round in 0..2 {
        let echoed = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = format!("hello {round}");
            s.write_all(msg.as_bytes()).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = String::new();
            let r = s.read_to_string(&mut got).map(|_| got);
            (msg, r)
        })
        .await
        .unwrap();
        match echoed.1 {
            Ok(got) => assert_eq!(echoed.0, got),
            Err(e) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(_guard);
                let mut log = String::new();
                let _ = stderr_log.lock().unwrap().read_to_string(&mut log);
                panic!("port-forward connection failed: {e}; kubectl said: {log}");
            }
        }
    }
    drop(k);
    let _ = Arc::new(());
}
