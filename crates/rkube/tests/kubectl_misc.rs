//! describe, explain, discovery (api-resources, api-versions), cluster-info, version and
//! kubeconfig editing.

mod support;

use support::{NGINX_DEPLOYMENT, SELECTOR_SERVICE, Server, pod_reader_role, read_pods_binding};

const OBJECTS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  app.env: dev
---
apiVersion: v1
kind: Secret
metadata:
  name: thirdsecret
type: Opaque
stringData:
  config.yaml: |-
    username: dbadmin
    password: mypassword123
";

#[test]
fn describe_objects() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    s.apply(&format!(
        "{OBJECTS}---\n{SELECTOR_SERVICE}---\n{}---\n{}",
        pod_reader_role(r#""list""#),
        read_pods_binding("john")
    ));
    let d = s.ok(&["describe", "deployment", "nginx-deployment"]);
    for line in [
        "Name:                   nginx-deployment\n",
        "Namespace:              default\n",
        "Labels:                 app=nginx\n",
        "Selector:               app=nginx\n",
        // The counts after "desired" move as the controllers work (there are no nodes).
        "Replicas:               3 desired | ",
        "StrategyType:           RollingUpdate\n",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge\n",
        "    Image:         nginx:1.14.2\n",
        "    Port:          80/TCP\n",
    ] {
        assert!(d.contains(line), "{line:?} missing in:\n{d}");
    }
    let svc = s.ok(&["describe", "service", "kplabs-service-selector"]);
    for line in [
        "Selector:                 app=nginx\n",
        "Type:                     ClusterIP\n",
        "Port:                     <unset>  8080/TCP\n",
        "TargetPort:               80/TCP\n",
        "Session Affinity:         None\n",
    ] {
        assert!(svc.contains(line), "{line:?} missing in:\n{svc}");
    }
    let cm = s.ok(&["describe", "configmap", "app-config"]);
    assert!(cm.contains("Data\n====\napp.env:\n----\ndev\n"), "{cm}");
    let secret = s.ok(&["describe", "secret", "thirdsecret"]);
    assert!(secret.contains("Type:  Opaque\n"), "{secret}");
    assert!(secret.contains("config.yaml:  41 bytes\n"), "{secret}");
    assert!(
        !secret.contains("dbadmin"),
        "describe must not print secret values: {secret}"
    );
    let ns = s.ok(&["describe", "namespace", "default"]);
    assert!(
        ns.starts_with(
            "Name:         default\nLabels:       kubernetes.io/metadata.name=default\n"
        ),
        "{ns}"
    );
    assert!(ns.contains("Status:       Active\n"), "{ns}");
    let role = s.ok(&["describe", "role", "pod-reader"]);
    assert!(
        role.ends_with("PolicyRule:\n  Resources  Non-Resource URLs  Resource Names  Verbs\n  ---------  -----------------  --------------  -----\n  pods       []                 []              [list]\n"),
        "{role}"
    );
    let rb = s.ok(&["describe", "rolebinding", "read-pods"]);
    assert!(
        rb.contains("Role:\n  Kind:  Role\n  Name:  pod-reader\n"),
        "{rb}"
    );
    assert!(rb.contains("  User  john"), "{rb}");
    assert_eq!(
        s.fails(&["describe", "deployment", "nope"]),
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );
}

#[test]
fn explain_fields() {
    let s = Server::start();
    let pod = s.ok(&["explain", "pod"]);
    assert!(
        pod.starts_with("KIND:       Pod\nVERSION:    v1\n\nDESCRIPTION:\n"),
        "{pod}"
    );
    assert!(pod.contains("  spec\t<PodSpec>\n"), "{pod}");
    assert!(pod.contains("  status\t<PodStatus>\n"), "{pod}");
    let spec = s.ok(&["explain", "pod.spec"]);
    assert!(spec.contains("FIELD: spec <PodSpec>\n"), "{spec}");
    assert!(
        spec.contains("  containers\t<[]Container> -required-\n"),
        "{spec}"
    );
    let tpl = s.ok(&["explain", "deployment.spec.template"]);
    assert!(
        tpl.starts_with("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"),
        "{tpl}"
    );
    assert!(tpl.contains("FIELD: template <PodTemplateSpec>\n"), "{tpl}");
    assert!(tpl.contains("  spec\t<PodSpec>\n"), "{tpl}");
    let err = s.fails(&["explain", "pod.nothing"]);
    assert!(err.contains("field \"nothing\" does not exist"), "{err}");
}

#[test]
fn api_resources_and_versions() {
    let s = Server::start();
    let all = s.ok(&["api-resources"]);
    let row = |table: &str, name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        all.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let cluster = s.ok(&["api-resources", "--namespaced=false"]);
    // Each row in full, found by its first column.
    for (table, want) in [
        (&all, &["pods", "po", "v1", "true", "Pod"][..]),
        (
            &all,
            &["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ),
        (&all, &["services", "svc", "v1", "true", "Service"]),
        (&all, &["configmaps", "cm", "v1", "true", "ConfigMap"]),
        (
            &all,
            &["roles", "rbac.authorization.k8s.io/v1", "true", "Role"],
        ),
        (&cluster, &["namespaces", "ns", "v1", "false", "Namespace"]),
        (&cluster, &["nodes", "no", "v1", "false", "Node"]),
        (
            &cluster,
            &["persistentvolumes", "pv", "v1", "false", "PersistentVolume"],
        ),
    ] {
        assert_eq!(row(table, want[0]), want);
    }
    assert!(!cluster.contains("\npods "), "{cluster}");
    let namespaced = s.ok(&["api-resources", "--namespaced=true"]);
    assert!(
        namespaced.lines().skip(1).all(|l| l.contains(" true ")),
        "{namespaced}"
    );
    assert!(!namespaced.contains("\nnamespaces "), "{namespaced}");

    let versions = s.ok(&["api-versions"]);
    for v in [
        "apps/v1",
        "batch/v1",
        "rbac.authorization.k8s.io/v1",
        "networking.k8s.io/v1",
        "v1",
    ] {
        assert!(versions.lines().any(|l| l == v), "{v} missing:\n{versions}");
    }
}

#[test]
fn cluster_info_and_version() {
    let s = Server::start();
    let info = s.ok(&["cluster-info"]);
    assert!(
        info.contains(&format!(
            "Kubernetes control plane\u{1b}[0m is running at \u{1b}[0;33m{}",
            s.url()
        )) || info.contains(&format!(
            "Kubernetes control plane is running at {}",
            s.url()
        )),
        "{info:?}"
    );
    let v = s.ok(&["version"]);
    assert!(v.starts_with("Client Version: v1.35."), "{v}");
    assert!(v.contains("\nServer Version: v1.35."), "{v}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(json["serverVersion"]["major"], "1");
    assert_eq!(json["serverVersion"]["minor"], "35");
}

#[test]
fn kubeconfig_from_scratch() {
    let s = Server::start();
    let cfg = s.dir.path().join("base-config");
    let kc = format!("--kubeconfig={}", cfg.display());
    let k = |args: &[&str]| {
        let mut all = vec!["config", kc.as_str()];
        all.extend_from_slice(args);
        s.ok(&all)
    };
    assert_eq!(
        k(&["set-cluster", "development", "--server=https://1.2.3.4"]),
        "Cluster \"development\" set.\n"
    );
    assert_eq!(
        k(&[
            "set-credentials",
            "experimenter",
            "--username=dev",
            "--password=some-password"
        ]),
        "User \"experimenter\" set.\n"
    );
    assert_eq!(
        k(&[
            "set-context",
            "dev-frontend",
            "--cluster=development",
            "--namespace=frontend",
            "--user=experimenter"
        ]),
        "Context \"dev-frontend\" created.\n"
    );
    k(&["set-cluster", "production", "--server=https://4.5.6.7"]);
    k(&[
        "set-context",
        "prod-frontend",
        "--cluster=production",
        "--namespace=frontend",
        "--user=experimenter",
    ]);
    let view = k(&["view"]);
    assert!(
        view.contains("    server: https://1.2.3.4\n  name: development\n"),
        "{view}"
    );
    assert!(view.contains("    password: REDACTED\n"), "{view}");
    let contexts = k(&["get-contexts"]);
    assert_eq!(
        contexts
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
    );
    assert!(contexts.contains("dev-frontend "), "{contexts}");
    assert_eq!(
        k(&["use-context", "dev-frontend"]),
        "Switched to context \"dev-frontend\".\n"
    );
    let contexts = k(&["get-contexts"]);
    let current = contexts.lines().find(|l| l.starts_with('*')).unwrap();
    assert_eq!(
        current.split_whitespace().collect::<Vec<_>>(),
        [
            "*",
            "dev-frontend",
            "development",
            "experimenter",
            "frontend"
        ]
    );
    // The server's own kubeconfig is untouched and still works.
    let own = s.ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(own, s.url());
}
