//! Test support: a real `rkube server` in a temporary data dir on a free port, and the real
//! kubectl pointed at it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `rkube server`.
pub struct Server {
    /// Data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// HTTPS port.
    pub port: u16,
    /// Extra flags it was started with.
    args: Vec<String>,
    /// Whether it runs its own node (the agent), with busybox images imported.
    node: bool,
    child: Option<Child>,
}

/// The test image: Debian's busybox-static as an OCI image, imported into every node that
/// tests start (`<data-dir>/agent/images/`), so no test needs a registry on the internet.
pub const BUSYBOX: &str = "busybox:1.36";

/// The real kubectl: `$RKUBE_KUBECTL`, else `.tools/kubectl` (installed by
/// `scripts/install-test-deps.sh`).
pub fn kubectl_path() -> PathBuf {
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

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server with `--disable-agent` on the embedded datastore.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(extra: &[&str]) -> Server {
        Self::start_inner(extra, false)
    }

    /// Starts a server that is also a node (its agent runs pods as real containers), with
    /// the busybox test image imported.
    pub fn start_node() -> Server {
        Self::start_node_with(&[])
    }

    /// `start_node` with extra flags.
    pub fn start_node_with(extra: &[&str]) -> Server {
        Self::start_inner(extra, true)
    }

    fn start_inner(extra: &[&str], node: bool) -> Server {
        let mut s = Server {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            node,
            child: None,
        };
        if node {
            let images = s.dir.path().join("agent/images");
            std::fs::create_dir_all(&images).unwrap();
            rkube_image::testing::busybox_oci_archive(&images.join("busybox.tar"), BUSYBOX)
                .expect("build the busybox test image (is busybox-static installed?)");
            let kubelet_port = free_port().to_string();
            s.args.extend(
                ["--kubelet-port", &kubelet_port, "--node-name", "node-1"]
                    .iter()
                    .map(|a| a.to_string()),
            );
        }
        s.spawn();
        if node {
            assert!(
                eventually(Duration::from_secs(30), || {
                    s.kubectl(&["get", "node", "node-1"]).status.success()
                        && s.jsonpath(
                            &["node", "node-1"],
                            "{.status.conditions[?(@.type==\"Ready\")].status}",
                        ) == "True"
                }),
                "the server's node did not become Ready"
            );
        }
        s
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .args(
                (!self.args.iter().any(|a| a == "--bind-address"))
                    .then_some(["--bind-address", "127.0.0.1"])
                    .into_iter()
                    .flatten(),
            )
            .args((!self.node).then_some("--disable-agent"))
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rkube server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var("RKUBE_TEST_LOG").is_ok() {
                    eprintln!("server: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut log = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let ready = line.contains("ready:");
                    log.push(line);
                    if ready {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("rkube server exited during start-up:\n{}", log.join("\n"))
                }
            }
            assert!(
                Instant::now() < deadline,
                "rkube server not ready in 30 s:\n{}",
                log.join("\n")
            );
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        self.child = Some(child);
    }

    /// `<data-dir>/kubeconfig.yaml`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A kubectl command with KUBECONFIG set.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_path());
        c.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        c
    }

    /// Runs kubectl.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test (with stderr) if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a manifest; returns stdout.
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Stops the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server (SIGKILL) and starts it again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if self.node {
            killall(self.dir.path());
        }
    }
}

/// Stops every pod a node left running under `data_dir` (containers outlive their agent by
/// design) and removes their mounts and cgroups: `rkube killall`.
pub fn killall(data_dir: &Path) {
    let _ = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["killall", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .status();
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Output of one kubectl run, as text.
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Server {
    /// Runs kubectl (optionally with stdin) and returns exit code, stdout and stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let out = match stdin {
            Some(input) => self.kubectl_stdin(args, input),
            None => self.kubectl(args),
        };
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `kubectl <args> -f -` with `stdin`, expecting success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let r = self.run(args, Some(stdin));
        assert_eq!(
            r.code,
            0,
            "kubectl {} failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// `kubectl <args>` with `stdin`, expecting failure; returns stderr.
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        let r = self.run(args, Some(stdin));
        assert_ne!(
            r.code,
            0,
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            r.stdout
        );
        r.stderr
    }

    /// Writes `contents` to `name` inside the server's temporary dir; returns the path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Waits until the pod is Ready (as `kubectl wait` does), failing with its description.
    pub fn wait_ready(&self, pod: &str) {
        let r = self.run(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("pod/{pod}"),
                "--timeout=60s",
            ],
            None,
        );
        assert_eq!(
            r.code,
            0,
            "pod {pod} not Ready: {}\n{}",
            r.stderr,
            self.run(&["describe", "pod", pod], None).stdout
        );
    }

    /// `kubectl get <what> -o jsonpath=<template>`, or "" while the object does not exist.
    pub fn jsonpath_or_empty(&self, what: &[&str], template: &str) -> String {
        let tpl = format!("jsonpath={template}");
        let mut args: Vec<&str> = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", &tpl]);
        let out = self.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get <what> -o jsonpath=<template>`.
    pub fn jsonpath(&self, what: &[&str], template: &str) -> String {
        let tpl = format!("jsonpath={template}");
        let mut args: Vec<&str> = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", &tpl]);
        self.ok(&args)
    }
}

/// The first whitespace-separated column of each line after the header.
pub fn names(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The seeds' nginx Deployment (3 replicas of nginx:1.14.2, label app=nginx).
pub const NGINX_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
";

/// The seeds' DaemonSet `kplabs-daemonset`: an nginx pod on every node, label tier=all-pods.
pub const SEED_DAEMONSET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kplabs-daemonset
spec:
  selector:
    matchLabels:
      tier: all-pods
  template:
    metadata:
      labels:
        tier: all-pods
    spec:
      containers:
      - name: pods
        image: nginx
";

/// The seeds' Service `kplabs-service-selector` selecting app=nginx.
pub const SELECTOR_SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: kplabs-service-selector
spec:
  selector:
    app: nginx
  ports:
  - port: 8080
    targetPort: 80
";

/// The seeds' Role `pod-reader` (namespace default) on pods with `verbs`, a YAML flow list
/// body such as `"get", "list"`.
pub fn pod_reader_role(verbs: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  namespace: default
  name: pod-reader
rules:
- apiGroups: [\"\"]
  resources: [\"pods\"]
  verbs: [{verbs}]
"
    )
}

/// The seeds' RoleBinding `read-pods` of Role `pod-reader` to the user `user`.
pub fn read_pods_binding(user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: default
subjects:
- kind: User
  name: {user}
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"
    )
}

/// Simulated nodes `sim-0 …` (`rkube agent --simulate`) joined to a server; stopped on drop.
pub struct Agent(Option<Child>);

impl Agent {
    /// Starts `nodes` simulated nodes and waits until they are registered.
    pub fn start(s: &Server, nodes: usize) -> Agent {
        let token = std::fs::read_to_string(s.dir.path().join("node-token")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .args(["agent", "--server", &s.url(), "--token", token.trim()])
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .args(["--simulate", &nodes.to_string(), "--node-name", "sim"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rkube agent");
        let agent = Agent(Some(child));
        assert!(
            eventually(Duration::from_secs(20), || {
                s.ok(&["get", "nodes", "-o", "name"]).lines().count() == nodes
            }),
            "simulated nodes did not register"
        );
        agent
    }

    /// Stops the agent: its nodes stop heartbeating.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
