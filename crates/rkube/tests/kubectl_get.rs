//! `kubectl get` against a real server: output formats, label and field selectors,
//! namespaces, watch and the NotFound message.

mod support;

/// Leaves out the `kube-root-ca.crt` ConfigMap every namespace gets (asynchronously) from the
/// root CA publisher.
const NOT_ROOT_CA: &str = "--field-selector=metadata.name!=kube-root-ca.crt";

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{NGINX_DEPLOYMENT, Server, names};

/// Three pods (they stay Pending: there is no node): env=dev, env=prod and unlabelled.
const PODS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: dev-pod
  labels:
    env: dev
spec:
  containers:
  - name: c
    image: nginx
---
apiVersion: v1
kind: Pod
metadata:
  name: prod-pod
  labels:
    env: prod
spec:
  containers:
  - name: c
    image: nginx
---
apiVersion: v1
kind: Pod
metadata:
  name: plain-pod
spec:
  containers:
  - name: c
    image: nginx
";

/// The seeds' resource-hogpod.
const HOG_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: resource-hogpod
spec:
  containers:
  - name: container-name
    image: nginx
    resources:
      requests:
        memory: \"64Mi\"
        cpu: \"0.5\"
      limits:
        memory: \"128Mi\"
        cpu: \"1\"
";

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn deployment_wide_yaml_and_json() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    let wide = s.ok(&["get", "deployments", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    let row: Vec<&str> = wide.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "nginx-deployment");
    assert_eq!(row[5..], ["nginx", "nginx:1.14.2", "app=nginx"], "{wide}");

    let yaml = s.ok(&["get", "deployment", "nginx-deployment", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  replicas: 3\n"), "{yaml}");
    assert!(yaml.contains("      - image: nginx:1.14.2\n"), "{yaml}");
    assert!(yaml.contains("  resourceVersion: \""), "{yaml}");

    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "deploy", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["kind"], "Deployment");
    assert_eq!(json["items"][0]["spec"]["replicas"], 3);
    assert_eq!(
        json["items"][0]["spec"]["template"]["spec"]["containers"][0]["name"],
        "nginx"
    );
}

#[test]
fn pods_table_wide_and_all_namespaces() {
    let s = Server::start();
    s.apply(PODS);
    let table = s.ok(&["get", "pods"]);
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..4]
                == ["dev-pod", "0/1", "Pending", "0"]),
        "{table}"
    );
    let wide = s.ok(&["get", "pods", "--all-namespaces", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{wide}"
    );
    assert!(wide.contains("default     dev-pod"), "{wide}");
}

#[test]
fn show_labels_and_label_selectors() {
    let s = Server::start();
    s.apply(PODS);
    let shown = s.ok(&["get", "pods", "--show-labels"]);
    assert!(shown.lines().next().unwrap().ends_with("LABELS"), "{shown}");
    let dev = shown.lines().find(|l| l.starts_with("dev-pod")).unwrap();
    assert!(dev.ends_with("env=dev"), "{shown}");
    let plain = shown.lines().find(|l| l.starts_with("plain-pod")).unwrap();
    assert!(plain.ends_with("<none>"), "{shown}");

    let sel = |l: &str| sorted(names(&s.ok(&["get", "pods", "-l", l])));
    assert_eq!(sel("env=dev"), ["dev-pod"]);
    assert_eq!(sel("env!=dev"), ["plain-pod", "prod-pod"]);
    assert_eq!(sel("env in (dev,prod)"), ["dev-pod", "prod-pod"]);
    assert_eq!(sel("env notin (dev)"), ["plain-pod", "prod-pod"]);
    assert_eq!(sel("env"), ["dev-pod", "prod-pod"]);
    assert_eq!(sel("!env"), ["plain-pod"]);

    let r = s.run(&["get", "pods", "-l", "env=staging"], None);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "No resources found in default namespace.\n");
}

#[test]
fn field_selectors_on_pods_and_events() {
    let s = Server::start();
    s.apply(PODS);
    assert_eq!(
        names(&s.ok(&["get", "pods", "--field-selector", "metadata.name=prod-pod"])),
        ["prod-pod"]
    );
    assert_eq!(
        sorted(names(&s.ok(&[
            "get",
            "pods",
            "--field-selector",
            "metadata.name!=prod-pod"
        ]))),
        ["dev-pod", "plain-pod"]
    );
    s.apply(
        "apiVersion: v1
kind: Event
metadata:
  name: dev-pod.1
involvedObject:
  kind: Pod
  name: dev-pod
  namespace: default
reason: Testing
message: hello from the test
type: Normal
---
apiVersion: v1
kind: Event
metadata:
  name: prod-pod.1
involvedObject:
  kind: Pod
  name: prod-pod
  namespace: default
reason: Other
message: not this one
type: Warning
",
    );
    let all = s.ok(&["get", "events"]);
    assert_eq!(
        all.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    // The scheduler may add FailedScheduling events of its own (there are no nodes).
    assert!(
        all.contains("hello from the test") && all.contains("not this one"),
        "{all}"
    );
    let filtered = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=dev-pod,reason=Testing",
    ]);
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    let row = filtered.lines().nth(1).unwrap();
    assert!(row.contains("Normal"), "{filtered}");
    assert!(row.contains("pod/dev-pod"), "{filtered}");
    assert!(row.ends_with("hello from the test"), "{filtered}");
}

#[test]
fn jsonpath_range_template_and_custom_columns() {
    let s = Server::start();
    s.apply(HOG_POD);
    s.apply(PODS);
    let out = s.ok(&[
        "get",
        "pod",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}{.spec.containers[*].resources}{'\\n'}",
        "-n",
        "default",
    ]);
    let hog = out
        .lines()
        .find(|l| l.starts_with("resource-hogpod"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        hog,
        r#"resource-hogpod{"limits":{"cpu":"1","memory":"128Mi"},"requests":{"cpu":"500m","memory":"64Mi"}}"#
    );
    assert!(out.lines().any(|l| l == "dev-pod{}"), "{out}");
    // One line per pod (kubectl itself ends the output with one more newline).
    assert_eq!(out.lines().filter(|l| !l.is_empty()).count(), 4, "{out}");

    let names_only = s.ok(&[
        "get",
        "pod",
        "dev-pod",
        "-o",
        "jsonpath={.spec.containers[*].name}",
    ]);
    assert_eq!(names_only, "c");

    s.apply(NGINX_DEPLOYMENT);
    let cols = s.ok(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,IMAGE:.spec.template.spec.containers[0].image",
    ]);
    let lines: Vec<Vec<&str>> = cols
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["NAME", "REPLICAS", "IMAGE"],
            vec!["nginx-deployment", "3", "nginx:1.14.2"]
        ]
    );
}

#[test]
fn namespaces_flag_and_all_namespaces() {
    let s = Server::start();
    s.apply(
        "apiVersion: v1
kind: Namespace
metadata:
  name: my-namespace
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mysql-config
  namespace: my-namespace
data:
  url: mysql://db
",
    );
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: local-config\n");
    assert_eq!(
        names(&s.ok(&["get", "configmap", "-n", "my-namespace", NOT_ROOT_CA])),
        ["mysql-config"]
    );
    assert_eq!(
        names(&s.ok(&["get", "cm", "--namespace=my-namespace", NOT_ROOT_CA])),
        ["mysql-config"]
    );
    assert_eq!(names(&s.ok(&["get", "cm", NOT_ROOT_CA])), ["local-config"]);
    let all = s.ok(&["get", "cm", "-A"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(3).collect::<Vec<_>>()
                == ["my-namespace", "mysql-config", "1"]),
        "{all}"
    );
    assert!(all.contains("default "), "{all}");
    let ns = s.ok(&["get", "namespace", "my-namespace"]);
    assert!(
        ns.lines()
            .nth(1)
            .unwrap()
            .starts_with("my-namespace   Active"),
        "{ns}"
    );
}

#[test]
fn kubernetes_service_and_missing_objects() {
    let s = Server::start();
    let svc = s.ok(&["get", "services"]);
    let row: Vec<&str> = svc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP"],
        "{svc}"
    );
    assert_eq!(
        s.fails(&["get", "deployment", "x"]),
        "Error from server (NotFound): deployments.apps \"x\" not found\n"
    );
    assert_eq!(
        s.fails(&["get", "pod", "nope", "-n", "kube-system"]),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    // kubectl looks the namespace up after a NotFound and names it instead.
    assert_eq!(
        s.fails(&["get", "pods", "-n", "nowhere", "x"]),
        "Error from server (NotFound): namespaces \"nowhere\" not found\n"
    );
    let r = s.run(&["get", "deployments"], None);
    assert_eq!(r.code, 0);
    assert_eq!(r.stderr, "No resources found in default namespace.\n");
    let unknown = s.fails(&["get", "flurbles"]);
    assert_eq!(
        unknown,
        "error: the server doesn't have a resource type \"flurbles\"\n"
    );
}

#[test]
fn watch_prints_new_objects() {
    let s = Server::start();
    let mut child = s
        .kubectl_cmd(&["get", "cm", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Give the watch time to start, then create an object.
    std::thread::sleep(Duration::from_millis(700));
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  k: v\n");
    // Generous: tests run in parallel on 2 cores, and kubectl itself takes a while to start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    // Read until the row is complete: output may arrive cut in the middle of a line.
    let row_done = |seen: &str| {
        seen.find("watched")
            .is_some_and(|at| seen[at..].contains('\n'))
    };
    while Instant::now() < deadline && !row_done(&seen) {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let row = seen
        .lines()
        .find(|l| l.starts_with("watched"))
        .unwrap_or_else(|| panic!("watch did not print the new ConfigMap: {seen:?}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1"), "{seen}");
}

#[test]
fn list_at_an_exact_resource_version_shows_that_revision() {
    let s = Server::start();
    s.ok(&["create", "configmap", "first", "--from-literal=v=1"]);
    let rv = s.jsonpath(&["configmap", "first"], "{.metadata.resourceVersion}");
    s.ok(&["create", "configmap", "second", "--from-literal=v=2"]);
    s.ok(&[
        "patch",
        "configmap",
        "first",
        "-p",
        r#"{"data":{"v":"changed"}}"#,
    ]);
    let at = |rv: &str| {
        let raw = s.ok(&[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/default/configmaps?resourceVersion={rv}&resourceVersionMatch=Exact"
            ),
        ]);
        serde_json::from_str::<serde_json::Value>(&raw).unwrap()
    };
    let list = at(&rv);
    assert_eq!(list["metadata"]["resourceVersion"], rv.as_str());
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["first"], "the list as it was at {rv}");
    let first = items
        .iter()
        .find(|i| i["metadata"]["name"] == "first")
        .unwrap();
    assert_eq!(first["data"]["v"], "1");
    // Exact needs a resourceVersion; too old ones are gone.
    let err = s.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact",
    ]);
    assert!(err.contains("resourceVersionMatch"), "{err}");
}
