//! Nodes that stop heartbeating become NotReady and unreachable-tainted; NoExecute taints
//! evict the pods that do not tolerate them.

mod support;

use std::time::Duration;

use support::{Agent, Server, eventually};

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
