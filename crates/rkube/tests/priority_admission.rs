//! End to end: the apiserver's Priority admission (PriorityClass → `spec.priority`), the
//! PriorityClass rules, the built-in system classes, and the `ReplicaFailure` condition a
//! ReplicaSet (and its Deployment) shows when its pods are refused, with the real kubectl.

mod support;

use std::time::Duration;

use support::{Server, eventually};

fn pod(name: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{spec_extra}  containers:
  - name: c
    image: nginx
"
    )
}

fn class(name: &str, value: i64, extra: &str) -> String {
    format!(
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: {name}
value: {value}
{extra}"
    )
}

fn priority(s: &Server, pod: &str) -> String {
    s.jsonpath(
        &["pod", pod],
        "{.spec.priorityClassName}/{.spec.priority}/{.spec.preemptionPolicy}",
    )
}

#[test]
fn pods_get_the_priority_of_their_class() {
    let s = Server::start();

    // The built-in classes exist from the start.
    assert!(
        eventually(Duration::from_secs(20), || {
            s.jsonpath_or_empty(&["priorityclass", "system-node-critical"], "{.value}")
                == "2000001000"
        }),
        "system-node-critical missing: {}",
        s.ok(&["get", "priorityclasses"])
    );
    assert_eq!(
        s.jsonpath(&["priorityclass", "system-cluster-critical"], "{.value}"),
        "2000000000"
    );

    s.apply(&class("high", 1000, ""));
    s.apply(&class("polite", 500, "preemptionPolicy: Never\n"));
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod("a", "  priorityClassName: high\n"),
    );
    assert_eq!(priority(&s, "a"), "high/1000/PreemptLowerPriority");
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod("b", "  priorityClassName: polite\n"),
    );
    assert_eq!(priority(&s, "b"), "polite/500/Never");
    s.ok_stdin(&["create", "-f", "-"], &pod("c", ""));
    assert_eq!(priority(&s, "c"), "/0/PreemptLowerPriority");
    // The system classes are not limited to kube-system (upstream since 1.17).
    s.ok_stdin(
        &["create", "-f", "-"],
        &pod("d", "  priorityClassName: system-node-critical\n"),
    );
    assert_eq!(
        priority(&s, "d"),
        "system-node-critical/2000001000/PreemptLowerPriority"
    );
    // A label change (an update that leaves spec.priority out) keeps the priority.
    s.ok(&["label", "pod", "a", "x=y"]);
    assert_eq!(priority(&s, "a"), "high/1000/PreemptLowerPriority");

    // Refusals, as upstream words them.
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &pod("bad", "  priorityClassName: nope\n"),
    );
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("pods \"bad\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &pod("bad", "  priorityClassName: high\n  priority: 5\n"),
    );
    assert!(
        err.contains("pods \"bad\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"),
        "{err}"
    );
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &pod(
            "bad",
            "  priorityClassName: polite\n  preemptionPolicy: PreemptLowerPriority\n",
        ),
    );
    assert!(
        err.contains("the string value of PreemptionPolicy (PreemptLowerPriority) must not be provided in pod spec; priority admission controller computed Never from the given PriorityClass name"),
        "{err}"
    );

    // PriorityClass validation.
    let err = s.fails_stdin(&["create", "-f", "-"], &class("huge", 2_000_000_000, ""));
    assert!(
        err.contains("The PriorityClass \"huge\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"),
        "{err}"
    );
    let err = s.fails_stdin(&["create", "-f", "-"], &class("system-mine", 5, ""));
    assert!(
        err.contains("metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"),
        "{err}"
    );
    let err = s.fails(&[
        "patch",
        "priorityclass",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 5}"#,
    ]);
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );

    // One global default, which pods without a class then get.
    s.apply(&class("dflt", 10, "globalDefault: true\n"));
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &class("dflt2", 20, "globalDefault: true\n"),
    );
    assert!(
        err.contains("priorityclasses.scheduling.k8s.io \"dflt2\" is forbidden: PriorityClass dflt is already marked as default. Only one default can exist"),
        "{err}"
    );
    s.ok_stdin(&["create", "-f", "-"], &pod("e", ""));
    assert_eq!(priority(&s, "e"), "dflt/10/PreemptLowerPriority");
}

const REPLICASET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      priorityClassName: missing
      containers:
      - name: c
        image: nginx
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      priorityClassName: missing
      containers:
      - name: c
        image: nginx
";

#[test]
fn refused_pods_show_as_replica_failure() {
    let s = Server::start();
    s.apply(REPLICASET);
    s.apply(DEPLOYMENT);
    let want = "pods \"web-\" is forbidden: no PriorityClass with name missing was found";
    let mut yaml = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            yaml = s.ok(&["get", "rs", "web", "-o", "yaml"]);
            yaml.contains("type: ReplicaFailure")
        }),
        "no ReplicaFailure condition:\n{yaml}"
    );
    assert!(yaml.contains("reason: FailedCreate"), "{yaml}");
    assert!(yaml.contains(want), "{yaml}");
    assert!(yaml.contains("status: \"True\""), "{yaml}");
    let events = s.ok(&["get", "events"]);
    assert!(
        events.contains("FailedCreate") && events.contains("Error creating: pods \"web-\""),
        "{events}"
    );

    // The Deployment carries its ReplicaSet's failure.
    let tpl = "{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}: \
               {.status.conditions[?(@.type==\"ReplicaFailure\")].message}";
    let mut got = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            got = s.jsonpath(&["deployment", "api"], tpl);
            got.starts_with("FailedCreate: pods \"api-")
        }),
        "deployment condition: {got}\n{}",
        s.ok(&["get", "deployment", "api", "-o", "yaml"])
    );
    assert!(
        got.ends_with("is forbidden: no PriorityClass with name missing was found"),
        "{got}"
    );

    // Once the class exists the pods are created and the condition goes away.
    s.apply(&class("missing", 100, ""));
    assert!(
        eventually(Duration::from_secs(30), || {
            s.jsonpath(&["rs", "web"], "{.status.replicas}") == "2"
                && !s
                    .ok(&["get", "rs", "web", "-o", "yaml"])
                    .contains("ReplicaFailure")
        }),
        "{}",
        s.ok(&["get", "rs", "web", "-o", "yaml"])
    );
    assert!(
        eventually(Duration::from_secs(30), || {
            s.jsonpath(&["deployment", "api"], tpl) == ": "
        }),
        "{}",
        s.ok(&["get", "deployment", "api", "-o", "yaml"])
    );
}
