//! `kubectl apply` (client- and server-side), `diff`, `replace` and the errors a user meets
//! when a manifest or a request is wrong.

mod support;

use support::{NGINX_DEPLOYMENT, SEED_DAEMONSET, SELECTOR_SERVICE, Server, pod_reader_role};

fn replicas(s: &Server, name: &str) -> String {
    s.jsonpath(&["deployment", name], "{.spec.replicas}")
}

#[test]
fn apply_created_unchanged_configured_and_view_last_applied() {
    let s = Server::start();
    let f = s.write_file("deployment.yaml", NGINX_DEPLOYMENT);
    let f = f.to_str().unwrap();
    assert_eq!(
        s.ok(&["apply", "-f", f]),
        "deployment.apps/nginx-deployment created\n"
    );
    assert_eq!(
        s.ok(&["apply", "-f", f]),
        "deployment.apps/nginx-deployment unchanged\n"
    );
    s.write_file(
        "deployment.yaml",
        &NGINX_DEPLOYMENT.replace("replicas: 3", "replicas: 4"),
    );
    assert_eq!(
        s.ok(&["apply", "-f", f]),
        "deployment.apps/nginx-deployment configured\n"
    );
    assert_eq!(replicas(&s, "nginx-deployment"), "4");

    let last = s.ok(&[
        "apply",
        "view-last-applied",
        "deployment",
        "nginx-deployment",
        "-n",
        "default",
    ]);
    assert!(
        last.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"),
        "{last}"
    );
    assert!(last.contains("  name: nginx-deployment\n"), "{last}");
    assert!(last.contains("  replicas: 4\n"), "{last}");
    let last_json = s.ok(&[
        "apply",
        "view-last-applied",
        "deploy/nginx-deployment",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&last_json).unwrap();
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.14.2"
    );
}

#[test]
fn apply_several_documents_and_seed_resources() {
    let s = Server::start();
    let out = s.apply(&format!(
        "{NGINX_DEPLOYMENT}---\n{SELECTOR_SERVICE}---\n{}---\n{SEED_DAEMONSET}",
        pod_reader_role(r#""lists""#)
    ));
    assert_eq!(
        out,
        "deployment.apps/nginx-deployment created\nservice/kplabs-service-selector created\n\
         role.rbac.authorization.k8s.io/pod-reader created\ndaemonset.apps/kplabs-daemonset created\n"
    );
    let svc = s.ok(&["get", "svc", "kplabs-service-selector"]);
    let row: Vec<&str> = svc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], "ClusterIP");
    assert!(row[2].starts_with("10.43."), "{svc}");
    assert_eq!(row[4], "8080/TCP");
}

#[test]
fn diff_exit_codes() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    let same = s.run(&["diff", "-f", "-"], Some(NGINX_DEPLOYMENT));
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert_eq!(same.stdout, "");
    let changed = NGINX_DEPLOYMENT.replace("replicas: 3", "replicas: 5");
    let d = s.run(&["diff", "-f", "-"], Some(&changed));
    assert_eq!(d.code, 1, "{}{}", d.stdout, d.stderr);
    assert!(d.stdout.contains("\n-  replicas: 3\n"), "{}", d.stdout);
    assert!(d.stdout.contains("\n+  replicas: 5\n"), "{}", d.stdout);
    assert!(
        d.stdout.contains("-  generation: 1\n+  generation: 2\n"),
        "{}",
        d.stdout
    );
    // diff stores nothing.
    assert_eq!(replicas(&s, "nginx-deployment"), "3");
}

#[test]
fn server_side_apply_conflict_and_force() {
    let s = Server::start();
    let first = [
        "apply",
        "--server-side",
        "--field-manager",
        "first",
        "-f",
        "-",
    ];
    assert_eq!(
        s.ok_stdin(&first, NGINX_DEPLOYMENT),
        "deployment.apps/nginx-deployment serverside-applied\n"
    );
    // Re-applying the same configuration is fine.
    assert_eq!(
        s.ok_stdin(&first, NGINX_DEPLOYMENT),
        "deployment.apps/nginx-deployment serverside-applied\n"
    );
    let changed = NGINX_DEPLOYMENT.replace("replicas: 3", "replicas: 6");
    let second = [
        "apply",
        "--server-side",
        "--field-manager",
        "second",
        "-f",
        "-",
    ];
    let err = s.fails_stdin(&second, &changed);
    assert!(
        err.starts_with(
            // An Apply manager is named without "using <version>", which upstream adds only
            // for managers whose operation was an Update.
            "error: Apply failed with 1 conflict: conflict with \"first\": .spec.replicas\n"
        ),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(replicas(&s, "nginx-deployment"), "3");

    let mut forced = second.to_vec();
    forced.insert(2, "--force-conflicts");
    assert_eq!(
        s.ok_stdin(&forced, &changed),
        "deployment.apps/nginx-deployment serverside-applied\n"
    );
    assert_eq!(replicas(&s, "nginx-deployment"), "6");
    let managers = s.jsonpath(
        &["deployment", "nginx-deployment", "--show-managed-fields"],
        "{.metadata.managedFields[*].manager}",
    );
    assert_eq!(managers, "first second");
}

#[test]
fn server_side_apply_twice_of_a_service_with_defaulted_protocol() {
    let s = Server::start();
    let ssa = ["apply", "--server-side", "-f", "-"];
    assert_eq!(
        s.ok_stdin(&ssa, SELECTOR_SERVICE),
        "service/kplabs-service-selector serverside-applied\n"
    );
    assert_eq!(
        s.ok_stdin(&ssa, SELECTOR_SERVICE),
        "service/kplabs-service-selector serverside-applied\n"
    );
    let ports = s.jsonpath(&["svc", "kplabs-service-selector"], "{.spec.ports}");
    assert_eq!(ports, r#"[{"port":8080,"protocol":"TCP","targetPort":80}]"#);
    // A client-side applied Service taken over by server-side apply.
    s.apply(&SELECTOR_SERVICE.replace("kplabs-service-selector", "csa"));
    s.ok_stdin(
        &ssa,
        &SELECTOR_SERVICE.replace("kplabs-service-selector", "csa"),
    );
    let ports = s.jsonpath(&["svc", "csa"], "{.spec.ports}");
    assert_eq!(ports, r#"[{"port":8080,"protocol":"TCP","targetPort":80}]"#);
}

#[test]
fn secret_string_data_is_stored_base64() {
    let s = Server::start();
    s.apply(
        "apiVersion: v1
kind: Secret
metadata:
  name: thirdsecret
type: Opaque
stringData:
  config.yaml: |-
    username: dbadmin
    password: mypassword123
",
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "secret", "thirdsecret", "-o", "json"])).unwrap();
    assert!(json.get("stringData").is_none(), "{json}");
    assert_eq!(
        json["data"]["config.yaml"],
        "dXNlcm5hbWU6IGRiYWRtaW4KcGFzc3dvcmQ6IG15cGFzc3dvcmQxMjM="
    );
    let table = s.ok(&["get", "secret"]);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("thirdsecret"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["Opaque", "1"], "{table}");
}

#[test]
fn node_port_allocation() {
    let s = Server::start();
    let svc = |name: &str, node_port: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector:
    type: publicpod
  ports:
  - port: 80
    targetPort: 80
{node_port}"
        )
    };
    s.apply(&svc("kplabs-nodeport", "    nodePort: 30080\n"));
    assert_eq!(
        s.jsonpath(&["svc", "kplabs-nodeport"], "{.spec.ports[0].nodePort}"),
        "30080"
    );
    let table = s.ok(&["get", "svc", "kplabs-nodeport"]);
    assert!(table.contains(" NodePort "), "{table}");
    assert!(table.contains(" 80:30080/TCP "), "{table}");

    let err = s.fails_stdin(
        &["apply", "-f", "-"],
        &svc("second", "    nodePort: 30080\n"),
    );
    assert_eq!(
        err,
        "The Service \"second\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated\n"
    );
    s.apply(&svc("auto", ""));
    let port: u16 = s
        .jsonpath(&["svc", "auto"], "{.spec.ports[0].nodePort}")
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&port) && port != 30080, "{port}");
}

#[test]
fn terminating_namespace_refuses_new_content() {
    let s = Server::start();
    // A finalizer nobody removes keeps the namespace Terminating.
    s.apply(
        "apiVersion: v1
kind: Namespace
metadata:
  name: held
  finalizers: [\"example.com/hold\"]
",
    );
    assert_eq!(
        s.ok(&["delete", "namespace", "held", "--wait=false"]),
        "namespace \"held\" deleted\n"
    );
    let ns = s.ok(&["get", "ns", "held"]);
    assert!(
        ns.lines().nth(1).unwrap().starts_with("held   Terminating"),
        "{ns}"
    );
    let err = s.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c2\n  namespace: held\n",
    );
    assert_eq!(
        err,
        "Error from server (Forbidden): error when creating \"STDIN\": configmaps \"c2\" is forbidden: unable to create new content in namespace held because it is being terminated\n"
    );
}

#[test]
fn malformed_yaml_and_invalid_names() {
    let s = Server::start();
    let err = s.fails_stdin(&["apply", "-f", "-"], "a: [b\n");
    assert_eq!(
        err,
        "error: error parsing STDIN: error converting YAML to JSON: yaml: line 1: did not find expected ',' or ']'\n"
    );
    let err = s.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    assert!(
        err.starts_with(
            "The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ),
        "{err}"
    );
    let err = s.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nosel\nspec:\n  template:\n    spec:\n      containers: []\n",
    );
    assert!(
        err.starts_with("The Deployment \"nosel\" is invalid: "),
        "{err}"
    );
    assert!(err.contains("spec.selector: Required value"), "{err}");
}

#[test]
fn unknown_kind() {
    let s = Server::start();
    let err = s.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Foo\nmetadata:\n  name: x\n",
    );
    assert_eq!(
        err,
        "error: resource mapping not found for name: \"x\" namespace: \"\" from \"STDIN\": no matches for kind \"Foo\" in version \"v1\"\nensure CRDs are installed first\n"
    );
}

#[test]
fn replace_with_stale_resource_version_conflicts() {
    // A ConfigMap, which no controller touches, so only this test changes its version.
    let s = Server::start();
    s.ok(&["create", "configmap", "settings", "--from-literal=mode=a"]);
    let live = s.ok(&["get", "configmap", "settings", "-o", "yaml"]);
    let f = s.write_file("live.yaml", &live.replace("mode: a", "mode: b"));
    let f = f.to_str().unwrap();
    assert_eq!(s.ok(&["replace", "-f", f]), "configmap/settings replaced\n");
    assert_eq!(
        s.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "b"
    );
    let err = s.fails(&["replace", "-f", f]);
    assert_eq!(
        err,
        format!(
            "Error from server (Conflict): error when replacing \"{f}\": Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again\n"
        )
    );
}
