//! The DaemonSet and StatefulSet controllers end to end, with simulated nodes (`rkube agent
//! --simulate`) so that pods are scheduled and become ready, driven by the real kubectl.

mod support;

use std::time::Duration;

use support::{Agent, SEED_DAEMONSET, Server, eventually};

const STATEFULSET: &str = "apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - port: 80
    name: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
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
        image: registry.k8s.io/nginx-slim:0.8
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
";

/// `<pod> <node>` lines of the DaemonSet's pods that are not terminating.
fn daemon_pods(s: &Server) -> Vec<(String, String)> {
    let out = s.jsonpath(
        &["pods", "-l", "tier=all-pods"],
        "{range .items[?(@.status.phase==\"Running\")]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, n)| (p.to_string(), n.to_string()))
        .collect()
}

fn ds_row(s: &Server) -> Vec<String> {
    let table = s.ok(&["get", "daemonset", "kplabs-daemonset"]);
    let row = table.lines().nth(1).unwrap_or_default();
    row.split_whitespace().map(String::from).collect()
}

#[test]
fn daemonset_one_pod_per_eligible_node_and_rolling_update() {
    let s = Server::start();
    let _agent = Agent::start(&s, 3);
    assert_eq!(
        s.apply(SEED_DAEMONSET),
        "daemonset.apps/kplabs-daemonset created\n"
    );
    assert!(
        eventually(Duration::from_secs(40), || {
            ds_row(&s)[1..4] == ["3", "3", "3"]
        }),
        "{}\n{}",
        s.ok(&["get", "daemonset"]),
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let table = s.ok(&["get", "daemonset"]);
    assert!(
        table.starts_with("NAME               DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE\nkplabs-daemonset   3         3         3       3            3           <none>"),
        "{table}"
    );
    let mut nodes: Vec<String> = daemon_pods(&s).into_iter().map(|(_, n)| n).collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-0", "sim-1", "sim-2"]);
    // Pods are pinned through node affinity, labelled with their revision and generation.
    let pod = &daemon_pods(&s)[0].0;
    let affinity = s.jsonpath(
        &["pod", pod],
        "{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key}",
    );
    assert_eq!(affinity, "metadata.name");
    let generation = s.jsonpath(&["pod", pod], "{.metadata.labels.pod-template-generation}");
    assert_eq!(generation, "1");
    let status = s.ok(&[
        "rollout",
        "status",
        "daemonset/kplabs-daemonset",
        "--timeout=60s",
    ]);
    assert!(
        status.ends_with("daemon set \"kplabs-daemonset\" successfully rolled out\n"),
        "{status}"
    );

    // A new template replaces every pod, node by node.
    s.ok(&[
        "set",
        "image",
        "daemonset/kplabs-daemonset",
        "pods=nginx:1.25",
    ]);
    let status = s.ok(&[
        "rollout",
        "status",
        "daemonset/kplabs-daemonset",
        "--timeout=90s",
    ]);
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    let images = s.jsonpath(
        &["pods", "-l", "tier=all-pods"],
        "{.items[*].spec.containers[0].image}",
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let images = s.jsonpath(
                &["pods", "-l", "tier=all-pods"],
                "{.items[*].spec.containers[0].image}",
            );
            images == "nginx:1.25 nginx:1.25 nginx:1.25"
        }),
        "{images}"
    );
    let revisions = s.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revisions.lines().count(), 2, "{revisions}");
    assert!(
        revisions
            .lines()
            .all(|r| r.starts_with("controllerrevision.apps/kplabs-daemonset-")),
        "{revisions}"
    );

    let history = s.ok(&["rollout", "history", "daemonset/kplabs-daemonset"]);
    let numbers: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(numbers, ["1", "2"], "{history}");

    // A node leaving takes its daemon pod with it.
    s.ok(&["delete", "node", "sim-0"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            daemon_pods(&s).iter().all(|(_, n)| n != "sim-0") && ds_row(&s)[1..4] == ["2", "2", "2"]
        }),
        "{}\n{}",
        s.ok(&["get", "daemonset"]),
        s.ok(&["get", "pods", "-o", "wide"])
    );

    // A nodeSelector restricts the DaemonSet to matching nodes.
    s.ok(&["label", "node", "sim-1", "disk=ssd"]);
    s.ok(&[
        "patch",
        "daemonset",
        "kplabs-daemonset",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}"#,
    ]);
    assert!(
        eventually(Duration::from_secs(40), || {
            let pods = daemon_pods(&s);
            pods.len() == 1 && pods[0].1 == "sim-1" && ds_row(&s)[1..6] == ["1", "1", "1", "1", "1"]
        }),
        "{}\n{}",
        s.ok(&["get", "daemonset"]),
        s.ok(&["get", "pods", "-o", "wide"])
    );
    // A node gaining the label gets a pod.
    s.ok(&["label", "node", "sim-2", "disk=ssd"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let mut nodes: Vec<String> = daemon_pods(&s).into_iter().map(|(_, n)| n).collect();
            nodes.sort();
            nodes == ["sim-1", "sim-2"]
        }),
        "{}",
        s.ok(&["get", "pods", "-o", "wide"])
    );
}

#[test]
fn daemonset_respects_taints_but_tolerates_cordoning() {
    let s = Server::start();
    let _agent = Agent::start(&s, 3);
    // A NoSchedule taint keeps the daemon off sim-0; cordoning sim-1 does not.
    s.ok(&["taint", "node", "sim-0", "dedicated=infra:NoSchedule"]);
    s.ok(&["cordon", "sim-1"]);
    s.apply(SEED_DAEMONSET);
    assert!(
        eventually(Duration::from_secs(40), || ds_row(&s)[1..4]
            == ["2", "2", "2"]),
        "{}\n{}",
        s.ok(&["get", "daemonset"]),
        s.ok(&["get", "pods", "-o", "wide"])
    );
    let mut nodes: Vec<String> = daemon_pods(&s).into_iter().map(|(_, n)| n).collect();
    nodes.sort();
    assert_eq!(nodes, ["sim-1", "sim-2"]);
    let tolerations = s.jsonpath(
        &["pods", "-l", "tier=all-pods"],
        "{.items[0].spec.tolerations[*].key}",
    );
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable")
            && tolerations.contains("node.kubernetes.io/not-ready"),
        "{tolerations}"
    );
}

/// The StatefulSet's pods (not terminating), sorted.
fn set_pods(s: &Server) -> Vec<String> {
    let out = s.jsonpath(
        &["pods", "-l", "app=nginx"],
        "{range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    );
    let mut pods: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.contains(' '))
        .map(String::from)
        .collect();
    pods.sort();
    pods
}

/// Whether `pods` is `web-0 … web-(n-1)` for some n: ordinals are only ever filled up
/// from 0 and removed from the top.
fn is_prefix(pods: &[String]) -> bool {
    pods.iter()
        .enumerate()
        .all(|(i, p)| *p == format!("web-{i}"))
}

#[test]
fn statefulset_ordered_pods_claims_scale_down_and_rollout() {
    let s = Server::start();
    let _agent = Agent::start(&s, 2);
    s.apply(STATEFULSET);
    let mut seen = Vec::new();
    assert!(
        eventually(Duration::from_secs(60), || {
            let pods = set_pods(&s);
            assert!(is_prefix(&pods), "pods out of order: {pods:?}");
            if seen.last() != Some(&pods.len()) {
                seen.push(pods.len());
            }
            s.jsonpath(&["sts", "web"], "{.status.readyReplicas}") == "3"
        }),
        "{}",
        s.ok(&["get", "sts,pods"])
    );
    assert!(seen.len() >= 2, "pods did not appear one by one: {seen:?}");
    let table = s.ok(&["get", "statefulset", "web"]);
    assert!(
        table.starts_with("NAME   READY   AGE\nweb    3/3"),
        "{table}"
    );
    let pvcs = s.ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(
        pvcs,
        "persistentvolumeclaim/www-web-0\npersistentvolumeclaim/www-web-1\npersistentvolumeclaim/www-web-2\n"
    );
    let pod = s.jsonpath(
        &["pod", "web-1"],
        "{.spec.hostname} {.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}",
    );
    assert_eq!(pod, "web-1 nginx web-1 1 www-web-1");
    let revision = s.jsonpath(
        &["pod", "web-0"],
        "{.metadata.labels.controller-revision-hash}",
    );
    let status = s.jsonpath(
        &["sts", "web"],
        "{.status.currentRevision} {.status.updateRevision} {.status.currentReplicas} {.status.updatedReplicas}",
    );
    assert_eq!(status, format!("{revision} {revision} 3 3"));
    // partition defaults to 0, so kubectl reports a partitioned roll out, as upstream.
    let out = s.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(
        out.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{out}"
    );

    // A new template rolls out from the highest ordinal down.
    s.ok(&[
        "set",
        "image",
        "statefulset/web",
        "nginx=registry.k8s.io/nginx-slim:0.9",
    ]);
    let out = s.ok(&["rollout", "status", "statefulset/web", "--timeout=90s"]);
    assert!(
        out.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{out}"
    );
    // currentRevision catches up once every pod runs the new revision and is ready.
    let revisions = || {
        s.jsonpath(
            &["sts", "web"],
            "{.status.currentRevision} {.status.updateRevision}",
        )
    };
    assert!(
        eventually(Duration::from_secs(20), || {
            let status = revisions();
            let (current, update) = status.split_once(' ').unwrap_or_default();
            current == update && current != revision
        }),
        "{}",
        revisions()
    );
    let images = s.jsonpath(
        &["pods", "-l", "app=nginx"],
        "{.items[*].spec.containers[0].image}",
    );
    assert_eq!(images.matches("nginx-slim:0.9").count(), 3, "{images}");

    // Scaling down removes web-2, then web-1; the claims stay (Retain).
    s.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    assert!(
        eventually(Duration::from_secs(60), || {
            let pods = set_pods(&s);
            assert!(is_prefix(&pods), "scale-down out of order: {pods:?}");
            pods == ["web-0"]
        }),
        "{}",
        s.ok(&["get", "pods"])
    );
    assert_eq!(s.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    let ready = s.jsonpath(&["sts", "web"], "{.status.replicas}");
    assert!(
        eventually(Duration::from_secs(20), || {
            s.jsonpath(&["sts", "web"], "{.status.replicas}") == "1"
        }),
        "{ready}"
    );
}
