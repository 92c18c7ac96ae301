//! Workload controllers end to end: the seeds' ReplicaSet and Deployment, with simulated
//! nodes (`rkube agent --simulate`) so that pods are scheduled and become ready.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Agent, NGINX_DEPLOYMENT, Server, eventually};

const REPLICASET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: replicaset
spec:
  replicas: 4
  selector:
    matchLabels:
      tier: distinctlabel
  template:
    metadata:
      labels:
        tier: distinctlabel
    spec:
      containers:
      - name: yeehaw
        image: nginx
";

fn pod_names(s: &Server, selector: &str) -> Vec<String> {
    s.ok(&["get", "pods", "-l", selector, "-o", "name"])
        .lines()
        .map(String::from)
        .collect()
}

/// Waits for the nginx Deployment's rollout to finish (`kubectl rollout status`); its output.
fn rollout_done(s: &Server) -> String {
    s.ok(&[
        "rollout",
        "status",
        "deployment/nginx-deployment",
        "--timeout=60s",
    ])
}

/// `kubectl rollout history` of the nginx Deployment.
fn history(s: &Server) -> String {
    s.ok(&["rollout", "history", "deployment/nginx-deployment"])
}

#[test]
fn replicaset_keeps_four_pods_and_replaces_a_deleted_one() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    s.apply(REPLICASET);
    let ready = || s.jsonpath(&["rs", "replicaset"], "{.status.readyReplicas}") == "4";
    assert!(
        eventually(Duration::from_secs(30), ready),
        "{}",
        s.ok(&["get", "rs,pods"])
    );
    let before = pod_names(&s, "tier=distinctlabel");
    assert_eq!(before.len(), 4);
    s.ok(&["delete", &before[0], "--wait=false"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let now = pod_names(&s, "tier=distinctlabel");
            now.len() == 4 && !now.contains(&before[0])
        }),
        "{}",
        s.ok(&["get", "pods"])
    );
    let table = s.ok(&["get", "replicaset"]);
    assert!(
        table.starts_with("NAME         DESIRED   CURRENT   READY   AGE\nreplicaset   4         4"),
        "{table}"
    );
}

#[test]
fn deployment_rollout_history_and_undo() {
    let s = Server::start();
    let _agent = Agent::start(&s, 3);
    assert_eq!(
        s.apply(NGINX_DEPLOYMENT),
        "deployment.apps/nginx-deployment created\n"
    );
    let status = rollout_done(&s);
    assert!(
        status.ends_with("deployment \"nginx-deployment\" successfully rolled out\n"),
        "{status}"
    );
    // The ReplicaSet and pods are named <deployment>-<pod-template-hash>[-<suffix>].
    let rs = s.ok(&["get", "rs", "-l", "app=nginx", "-o", "name"]);
    let hash = s.ok(&["get", "deploy", "nginx-deployment", "-o", "name"]);
    assert!(hash.contains("nginx-deployment"));
    assert!(
        rs.trim().starts_with("replicaset.apps/nginx-deployment-"),
        "{rs}"
    );
    let rs_name = rs.trim().trim_start_matches("replicaset.apps/").to_string();
    for pod in pod_names(&s, "app=nginx") {
        assert!(
            pod.starts_with(&format!("pod/{rs_name}-")),
            "{pod} not of {rs_name}"
        );
    }

    s.ok(&["scale", "deployment/nginx-deployment", "--replicas=10"]);
    assert!(eventually(Duration::from_secs(60), || {
        s.jsonpath(
            &["deploy", "nginx-deployment"],
            "{.status.availableReplicas}",
        ) == "10"
    }));

    s.ok(&[
        "set",
        "image",
        "deployment/nginx-deployment",
        "nginx=nginx:1.16.1",
    ]);
    rollout_done(&s);
    assert_eq!(
        history(&s),
        "deployment.apps/nginx-deployment \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );
    let rev1 = s.ok(&[
        "rollout",
        "history",
        "deployment/nginx-deployment",
        "--revision",
        "1",
    ]);
    assert!(
        rev1.contains("with revision #1") && rev1.contains("nginx:1.14.2"),
        "{rev1}"
    );

    // A rollback appears as a new revision.
    s.ok(&[
        "rollout",
        "undo",
        "deployment/nginx-deployment",
        "--to-revision=1",
    ]);
    rollout_done(&s);
    assert_eq!(
        history(&s),
        "deployment.apps/nginx-deployment \nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n\n"
    );
    let image = s.jsonpath(
        &["deploy", "nginx-deployment"],
        "{.spec.template.spec.containers[0].image}",
    );
    assert_eq!(image, "nginx:1.14.2");
    let describe = s.ok(&["describe", "deployment", "nginx-deployment"]);
    assert!(describe.contains("ScalingReplicaSet"), "{describe}");
}

#[test]
fn controllers_run_apart_from_the_server() {
    // The server runs neither scheduler nor controllers; standalone processes do, as API
    // clients with the admin kubeconfig.
    let s = Server::start_with(&["--disable-controller-manager", "--disable-scheduler"]);
    let mut cm = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["controller-manager", "--kubeconfig"])
        .arg(s.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rkube controller-manager");
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["scheduler", "--kubeconfig"])
        .arg(s.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rkube scheduler");
    let _agent = Agent::start(&s, 1);
    s.apply(REPLICASET);
    let ready = || s.jsonpath(&["rs", "replicaset"], "{.status.readyReplicas}") == "4";
    assert!(eventually(Duration::from_secs(30), ready));
    assert_eq!(pod_names(&s, "tier=distinctlabel").len(), 4);
    assert!(
        cm.try_wait().unwrap().is_none(),
        "controller-manager exited"
    );
    for child in [&mut cm, &mut scheduler] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
