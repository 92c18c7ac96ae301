//! Cordon, uncordon and drain with PodDisruptionBudgets, on simulated nodes.

mod support;

use std::time::Duration;

use support::{Agent, Server, eventually};

fn running_on(s: &Server, node: &str) -> usize {
    s.ok(&[
        "get",
        "pods",
        "--field-selector",
        &format!("spec.nodeName={node},status.phase=Running"),
        "-o",
        "name",
    ])
    .lines()
    .count()
}

fn web_with_budget(s: &Server, min_available: &str) {
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    s.ok(&[
        "create",
        "pdb",
        "web-pdb",
        "--selector=app=web",
        &format!("--min-available={min_available}"),
    ]);
    assert!(eventually(Duration::from_secs(30), || {
        s.jsonpath(&["deploy", "web"], "{.status.availableReplicas}") == "3"
    }));
}

#[test]
fn drain_evicts_within_the_disruption_budget() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    web_with_budget(&s, "2");
    assert!(eventually(Duration::from_secs(20), || {
        s.jsonpath(&["pdb", "web-pdb"], "{.status.disruptionsAllowed}") == "1"
    }));
    let out = s.ok(&["drain", "sim-0", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(
        out.contains("node/sim-0 cordoned") && out.contains("node/sim-0 drained"),
        "{out}"
    );
    assert_eq!(running_on(&s, "sim-0"), 0);
    let nodes = s.ok(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    assert!(eventually(Duration::from_secs(30), || running_on(
        &s, "sim-1"
    ) == 3));
    s.ok(&["uncordon", "sim-0"]);
    assert!(!s.ok(&["get", "nodes"]).contains("SchedulingDisabled"));
}

#[test]
fn drain_stops_at_a_budget_that_allows_no_disruption() {
    let s = Server::start();
    let _agent = Agent::start(&s, 1);
    web_with_budget(&s, "3");
    assert!(eventually(Duration::from_secs(20), || {
        s.jsonpath(&["pdb", "web-pdb"], "{.status.currentHealthy}") == "3"
    }));
    let table = s.ok(&["get", "pdb"]);
    assert!(
        table.contains("web-pdb   3               N/A               0"),
        "{table}"
    );
    let out = s.kubectl(&["drain", "sim-0", "--ignore-daemonsets", "--timeout=5s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    assert_eq!(running_on(&s, "sim-0"), 3);
}
