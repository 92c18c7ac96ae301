//! Nodes that stop heartbeating become NotReady and unreachable-tainted; NoExecute taints
//! evict the pods that do not tolerate them.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Server, eventually};

/// Simulated nodes joined to `s`; `stop` ends their heartbeats.
struct Agent(Option<Child>);

impl Agent {
    fn start(s: &Server, nodes: usize) -> Agent {
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
        assert!(eventually(Duration::from_secs(20), || {
            s.ok(&["get", "nodes", "-o", "name"]).lines().count() == nodes
        }));
        agent
    }

    fn stop(&mut self) {
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

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  nodeName: sim-0
  containers:
  - name: c
    image: nginx
";

#[test]
fn no_execute_taint_evicts_pods_that_do_not_tolerate_it() {
    let s = Server::start();
    let _agent = Agent::start(&s, 1);
    s.apply(&POD.replace("NAME", "plain"));
    s.apply(&format!(
        "{}  tolerations:\n  - key: dedicated\n    operator: Exists\n    effect: NoExecute\n",
        POD.replace("NAME", "tolerant")
    ));
    assert!(eventually(Duration::from_secs(20), || {
        s.ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name",
        ])
        .lines()
        .count()
            == 2
    }));
    s.ok(&["taint", "nodes", "sim-0", "dedicated=special:NoExecute"]);
    assert!(
        eventually(Duration::from_secs(20), || s
            .ok(&["get", "pods", "-o", "name"])
            == "pod/tolerant\n"),
        "{}",
        s.ok(&["get", "pods"])
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    assert!(
        events.contains("Marking for deletion Pod default/plain"),
        "{events}"
    );
    s.ok(&["taint", "nodes", "sim-0", "dedicated-"]);
}

#[test]
fn a_silent_node_becomes_not_ready_and_its_pods_are_evicted() {
    let s = Server::start_with(&["--node-monitor-grace-period", "3"]);
    let mut agent = Agent::start(&s, 1);
    s.apply(&format!(
        "{}  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: 2\n",
        POD.replace("NAME", "short-lived")
    ));
    assert!(eventually(Duration::from_secs(20), || {
        s.ok(&[
            "get",
            "pod",
            "short-lived",
            "-o",
            "jsonpath={.status.phase}",
        ]) == "Running"
    }));
    agent.stop();
    assert!(
        eventually(Duration::from_secs(30), || s
            .ok(&["get", "nodes"])
            .contains("sim-0   NotReady")),
        "{}",
        s.ok(&["get", "nodes"])
    );
    let taints = s.ok(&[
        "get",
        "node",
        "sim-0",
        "-o",
        "jsonpath={.spec.taints[*].key}",
    ]);
    assert!(
        taints.contains("node.kubernetes.io/unreachable"),
        "{taints}"
    );
    // Gone once its 2 s toleration ran out (deleted gracefully; no kubelet finishes it, so it
    // is marked for deletion).
    assert!(
        eventually(Duration::from_secs(30), || {
            !s.ok(&[
                "get",
                "pod",
                "short-lived",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ])
            .is_empty()
        }),
        "{}",
        s.ok(&["get", "pod", "short-lived", "-o", "yaml"])
    );
}
