//! End to end: `rkube server` (with its in-process scheduler) and `rkube agent --simulate 3`
//! as a separate process, driven with the real kubectl.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Server, eventually};

/// A running `rkube agent --simulate N --node-name sim`, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn token(s: &Server) -> String {
    std::fs::read_to_string(s.dir.path().join("node-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn start_agent(s: &Server, n: usize) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["agent", "--server", &s.url(), "--token", &token(s)])
        .args(["--simulate", &n.to_string(), "--node-name", "sim"])
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .stdout(Stdio::null())
        .stderr(if std::env::var("RKUBE_TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("start rkube agent");
    let agent = Agent(child);
    assert!(
        eventually(Duration::from_secs(30), || {
            let out = s.kubectl(&["get", "nodes", "--no-headers"]);
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines().filter(|l| l.contains(" Ready ")).count() == n
        }),
        "nodes not Ready: {}",
        String::from_utf8_lossy(&s.kubectl(&["get", "nodes"]).stdout)
    );
    agent
}

fn node_of(s: &Server, pod: &str) -> String {
    s.jsonpath(&["pod", pod], "{.spec.nodeName}")
}

fn phase(s: &Server, pod: &str) -> String {
    s.jsonpath(&["pod", pod], "{.status.phase}")
}

fn wait_phase(s: &Server, pod: &str, want: &str) {
    assert!(
        eventually(Duration::from_secs(20), || phase(s, pod) == want),
        "pod {pod} not {want}:\n{}",
        s.ok(&["describe", "pod", pod])
    );
}

fn describe_has(s: &Server, pod: &str, text: &str) {
    let mut last = String::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            last = s.ok(&["describe", "pod", pod]);
            last.contains(text)
        }),
        "describe pod {pod} lacks {text:?}:\n{last}"
    );
}

/// The seeds' node-affinity pod (with the fields spelled as the API spells them).
const NODE_AFFINITY_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: node-affinity
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - key: disk
            operator: In
            values:
            - ssd
  containers:
  - name: service-pods
    image: nginx
";

const HOG_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  containers:
  - name: c
    image: nginx
    resources:
      requests:
        cpu: \"100\"
        memory: 64Mi
";

#[test]
fn pods_are_scheduled_onto_simulated_nodes() {
    let s = Server::start();
    let _agent = start_agent(&s, 3);
    let nodes = s.ok(&["get", "nodes", "-o", "wide"]);
    assert!(nodes.contains("v1.35.0"), "{nodes}");
    assert!(
        s.ok(&["get", "lease", "-n", "kube-node-lease"])
            .contains("sim-2")
    );

    // An ordinary pod is bound and Running, with an IP from its node's range.
    s.ok(&["run", "web", "--image=nginx"]);
    wait_phase(&s, "web", "Running");
    let node = node_of(&s, "web");
    assert!(node.starts_with("sim-"), "{node}");
    let ip = s.jsonpath(&["pod", "web"], "{.status.podIP}");
    let idx: usize = node["sim-".len()..].parse().unwrap();
    assert!(ip.starts_with(&format!("10.42.{idx}.")), "{ip} on {node}");
    let ready = s.jsonpath(
        &["pod", "web"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    );
    assert_eq!(ready, "True");
    assert!(s.ok(&["get", "pod", "web"]).contains("1/1"));

    // The node-affinity pod waits for a node labelled disk=ssd.
    s.apply(NODE_AFFINITY_POD);
    describe_has(&s, "node-affinity", "FailedScheduling");
    describe_has(
        &s,
        "node-affinity",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    );
    assert_eq!(phase(&s, "node-affinity"), "Pending");
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=node-affinity",
    ]);
    assert!(
        events.contains("default-scheduler") || events.contains("FailedScheduling"),
        "{events}"
    );
    s.ok(&["label", "node", "sim-1", "disk=ssd"]);
    wait_phase(&s, "node-affinity", "Running");
    assert_eq!(node_of(&s, "node-affinity"), "sim-1");

    // A pod asking for 100 CPUs fits nowhere.
    s.apply(HOG_POD);
    describe_has(&s, "hog", "Insufficient cpu");
    describe_has(&s, "hog", "0/3 nodes are available: 3 Insufficient cpu.");
    assert_eq!(phase(&s, "hog"), "Pending");
    assert_eq!(node_of(&s, "hog"), "");
}

#[test]
fn deleting_a_running_pod() {
    let s = Server::start();
    let _agent = start_agent(&s, 1);
    s.ok(&["run", "web", "--image=nginx"]);
    wait_phase(&s, "web", "Running");
    // The simulated kubelet finishes the graceful deletion.
    s.ok(&["delete", "pod", "web", "--timeout=30s"]);
    assert!(
        s.ok(&["get", "pods"])
            .lines()
            .all(|l| !l.starts_with("web "))
    );
}

#[test]
fn taints_tolerations_cordon_and_completion() {
    let s = Server::start();
    let _agent = start_agent(&s, 3);
    s.ok(&["taint", "node", "sim-0", "dedicated=gpu:NoSchedule"]);
    s.ok(&["taint", "node", "sim-1", "dedicated=gpu:NoSchedule"]);
    s.ok(&["cordon", "sim-2"]);

    s.ok(&["run", "plain", "--image=nginx"]);
    describe_has(
        &s,
        "plain",
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated \
         taint {dedicated: gpu}.",
    );
    assert_eq!(phase(&s, "plain"), "Pending");

    s.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: tolerant
spec:
  tolerations:
  - key: dedicated
    operator: Equal
    value: gpu
    effect: NoSchedule
  containers:
  - name: c
    image: nginx
",
    );
    wait_phase(&s, "tolerant", "Running");
    let n = node_of(&s, "tolerant");
    assert!(n == "sim-0" || n == "sim-1", "{n}");

    // Uncordoning is a node event: the waiting pod is retried and lands there.
    s.ok(&["uncordon", "sim-2"]);
    wait_phase(&s, "plain", "Running");
    assert_eq!(node_of(&s, "plain"), "sim-2");

    // Cordon keeps new pods off.
    s.ok(&["taint", "node", "sim-0", "dedicated-"]);
    s.ok(&["cordon", "sim-2"]);
    for i in 0..3 {
        s.ok(&["run", &format!("new-{i}"), "--image=nginx"]);
    }
    for i in 0..3 {
        let p = format!("new-{i}");
        wait_phase(&s, &p, "Running");
        assert_eq!(node_of(&s, &p), "sim-0");
    }

    // A run-to-completion pod succeeds.
    s.ok(&[
        "run",
        "once",
        "--image=busybox",
        "--restart=Never",
        "--",
        "true",
    ]);
    wait_phase(&s, "once", "Succeeded");
    let code = s.jsonpath(
        &["pod", "once"],
        "{.status.containerStatuses[0].state.terminated.exitCode}",
    );
    assert_eq!(code, "0");
}

#[test]
fn agent_errors_name_the_fix() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--server", "https://127.0.0.1:1", "--token", "x"]);
    assert!(e.contains("--kubeconfig"), "{e}");
    let e = run(&[
        "--server",
        "https://127.0.0.1:1",
        "--token",
        "x",
        "--simulate",
        "1",
    ]);
    assert!(
        e.contains("--kubeconfig") && e.contains("--insecure-skip-tls-verify"),
        "{e}"
    );
}

#[test]
fn topology_spread_constraints_balance_zones() {
    let s = Server::start();
    let _agent = start_agent(&s, 3);
    s.ok(&["label", "node", "sim-0", "zone=a"]);
    s.ok(&["label", "node", "sim-1", "zone=b"]);
    s.ok(&["label", "node", "sim-2", "zone=b"]);
    s.apply(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: spread
spec:
  replicas: 4
  selector:
    matchLabels: {app: spread}
  template:
    metadata:
      labels: {app: spread}
    spec:
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: zone
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: spread}
      containers:
      - name: c
        image: busybox:1.36
",
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            s.ok(&[
                "get",
                "pods",
                "-l",
                "app=spread",
                "--field-selector=status.phase=Running",
                "-o",
                "name",
            ])
            .lines()
            .count()
                == 4
        }),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let nodes = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let in_a = nodes.split_whitespace().filter(|n| *n == "sim-0").count();
    assert_eq!(in_a, 2, "zone a holds half the pods: {nodes}");
    // With zone b cordoned, a fifth pod fits zone a (skew 1) but a sixth would make it 2: it
    // stays Pending with the reason.
    s.ok(&["cordon", "sim-1"]);
    s.ok(&["cordon", "sim-2"]);
    s.ok(&["scale", "deployment", "spread", "--replicas=6"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            s.ok(&["get", "events"])
                .contains("didn't match pod topology spread constraints")
        }),
        "{}",
        s.ok(&["get", "events"])
    );
}
