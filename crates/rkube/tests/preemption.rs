//! End to end: preemption by the in-process scheduler of `rkube server`, with one simulated
//! node of 2 CPU (`rkube agent --simulate 1 --simulate-cpu 2`), driven with the real kubectl.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Server, eventually};

/// A running `rkube agent --simulate 1`, killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(s: &Server) -> Agent {
    let token = std::fs::read_to_string(s.dir.path().join("node-token")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["agent", "--server", &s.url(), "--token", token.trim()])
        .args([
            "--simulate",
            "1",
            "--simulate-cpu",
            "2",
            "--node-name",
            "sim",
        ])
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rkube agent");
    let agent = Agent(child);
    assert!(
        eventually(Duration::from_secs(30), || {
            s.ok(&["get", "nodes", "--no-headers"]).contains(" Ready ")
        }),
        "node not Ready: {}",
        s.ok(&["get", "nodes"])
    );
    agent
}

fn pod(name: &str, class: Option<&str>, extra: &str) -> String {
    let class = class
        .map(|c| format!("  priorityClassName: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{class}{extra}  containers:
  - name: c
    image: nginx
    resources:
      requests:
        cpu: \"1\"
"
    )
}

const CLASSES: &str = "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high-nonpreempting
value: 1000
preemptionPolicy: Never
";

fn phase(s: &Server, pod: &str) -> String {
    s.jsonpath(&["pod", pod], "{.status.phase}")
}

fn existing(s: &Server, pods: &[&str]) -> Vec<String> {
    let out = s.ok(&["get", "pods", "-o", "name"]);
    pods.iter()
        .filter(|p| out.lines().any(|l| l == format!("pod/{p}")))
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_higher_priority_pod_preempts_a_lower_one() {
    let s = Server::start();
    let _agent = start_agent(&s);
    s.apply(CLASSES);
    for name in ["low-0", "low-1"] {
        s.apply(&pod(name, None, ""));
    }
    assert!(
        eventually(Duration::from_secs(30), || {
            phase(&s, "low-0") == "Running" && phase(&s, "low-1") == "Running"
        }),
        "low-priority pods not Running:\n{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );

    // The node is full; the high-priority pod evicts one low-priority pod and takes its place.
    s.apply(&pod("important", Some("high"), ""));
    let mut last = String::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            last = s.ok(&["get", "pods", "-o", "wide"]);
            phase(&s, "important") == "Running" && existing(&s, &["low-0", "low-1"]).len() == 1
        }),
        "important not Running in place of a low pod:\n{last}\n{}",
        s.ok(&["describe", "pod", "important"])
    );
    assert_eq!(
        s.jsonpath(&["pod", "important"], "{.spec.nodeName}"),
        "sim-0"
    );
    let uid = s.jsonpath(&["pod", "important"], "{.metadata.uid}");
    let events = s.ok(&["get", "events"]);
    assert!(
        events.contains("Preempted")
            && events.contains(&format!("Preempted by pod {uid} on node sim-0")),
        "{events}"
    );
    let survivor = existing(&s, &["low-0", "low-1"]).remove(0);

    // A pod that may not preempt stays Pending, and the remaining low pod keeps running.
    s.apply(&pod(
        "polite",
        Some("high-nonpreempting"),
        "  preemptionPolicy: Never\n",
    ));
    let mut describe = String::new();
    assert!(
        eventually(Duration::from_secs(30), || {
            describe = s.ok(&["describe", "pod", "polite"]);
            describe.contains("preemption: not eligible due to preemptionPolicy=Never.")
        }),
        "{describe}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(phase(&s, "polite"), "Pending");
    assert_eq!(existing(&s, &[survivor.as_str()]), vec![survivor.clone()]);
    assert_eq!(phase(&s, &survivor), "Running");
}
