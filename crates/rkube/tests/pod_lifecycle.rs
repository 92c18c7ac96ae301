//! Pod lifecycle details on a real node, through the real kubectl: init containers in order,
//! containers sharing an emptyDir, the downward API, hostPath, `kubectl attach`,
//! `kubectl logs -f`, and a preStop hook running before the container is stopped.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use support::{BUSYBOX, Server, eventually};

#[test]
fn init_containers_volumes_downward_api_and_hooks() {
    let s = Server::start_node();
    let host_dir = s.dir.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("greeting"), "from the host\n").unwrap();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: lifecycle
  labels:
    app: lifecycle
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: first
    image: {BUSYBOX}
    command: [sh, -c, 'echo first >> /work/order']
    volumeMounts:
    - {{name: work, mountPath: /work}}
  - name: second
    image: {BUSYBOX}
    command: [sh, -c, 'echo second >> /work/order']
    volumeMounts:
    - {{name: work, mountPath: /work}}
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'cat /work/order; echo pod=$POD_NAME ns=$POD_NAMESPACE; sleep 3600']
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: POD_NAMESPACE
      valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}
    lifecycle:
      preStop:
        exec:
          command: [sh, -c, 'echo stopping > /host/prestop']
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: info, mountPath: /etc/podinfo}}
    - {{name: host, mountPath: /host}}
  volumes:
  - name: work
    emptyDir: {{}}
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef: {{fieldPath: metadata.labels}}
  - name: host
    hostPath:
      path: {}
      type: Directory
",
        host_dir.display()
    ));
    s.wait_ready("lifecycle");
    assert!(
        eventually(Duration::from_secs(20), || {
            s.run(&["logs", "lifecycle"], None).stdout
                == "first\nsecond\npod=lifecycle ns=default\n"
        }),
        "{}",
        s.run(&["logs", "lifecycle"], None).stdout
    );
    assert_eq!(
        s.ok(&["exec", "lifecycle", "--", "cat", "/etc/podinfo/labels"]),
        "app=\"lifecycle\""
    );
    assert_eq!(
        s.ok(&["exec", "lifecycle", "--", "cat", "/host/greeting"]),
        "from the host\n"
    );
    let init = s.jsonpath(
        &["pod", "lifecycle"],
        "{.status.initContainerStatuses[*].state.terminated.reason}",
    );
    assert_eq!(init, "Completed Completed");
    // The preStop hook runs before the container is stopped.
    s.ok(&["delete", "pod", "lifecycle"]);
    assert_eq!(
        std::fs::read_to_string(host_dir.join("prestop")).unwrap_or_default(),
        "stopping\n"
    );
}

#[test]
fn attach_and_follow_logs() {
    let s = Server::start_node();
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done']
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    stdin: true
    command: [sh, -c, 'while read line; do echo got $line; done']
"
    ));
    s.wait_ready("chatty");
    s.wait_ready("reader");
    // logs -f keeps delivering new lines.
    let mut follow = s
        .kubectl_cmd(&["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let got: Vec<String> = (0..8).filter_map(|_| lines.next()?.ok()).collect();
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(got.len(), 8, "{got:?}");
    assert!(got.iter().all(|l| l.starts_with("tick ")), "{got:?}");
    // --since limits to recent lines.
    let recent = s.ok(&["logs", "chatty", "--since=1s"]);
    let all = s.ok(&["logs", "chatty"]);
    assert!(recent.lines().count() < all.lines().count(), "{recent}");
    // attach -i sends stdin to the running process and shows its output (kubectl stays
    // attached until interrupted, as upstream's does).
    let mut attach = s
        .kubectl_cmd(&["attach", "-i", "reader", "-c", "main"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = attach.stdin.take().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    stdin.write_all(b"hello\nworld\n").unwrap();
    stdin.flush().unwrap();
    let mut out = BufReader::new(attach.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(line)) = out.next() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) {
        let done = line == "got world";
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(seen.iter().any(|l| l == "got hello"), "{seen:?}");
    assert!(seen.iter().any(|l| l == "got world"), "{seen:?}");
}
