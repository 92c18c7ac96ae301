//! Changing live objects: label, annotate, patch (strategic, merge, json), scale, edit and
//! delete.

mod support;

use support::{NGINX_DEPLOYMENT, Server, names};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: webserver
spec:
  containers:
  - name: web
    image: nginx
";

#[test]
fn label_overwrite_and_remove() {
    let s = Server::start();
    s.apply(POD);
    assert_eq!(
        s.ok(&["label", "pod", "webserver", "env=dev"]),
        "pod/webserver labeled\n"
    );
    assert_eq!(
        names(&s.ok(&["get", "pods", "-l", "env=dev"])),
        ["webserver"]
    );
    assert_eq!(
        s.fails(&["label", "pod", "webserver", "env=prod"]),
        "error: 'env' already has a value (dev), and --overwrite is false\n"
    );
    assert_eq!(
        s.ok(&["label", "pod", "webserver", "env=prod", "--overwrite"]),
        "pod/webserver labeled\n"
    );
    assert_eq!(
        s.jsonpath(&["pod", "webserver"], "{.metadata.labels.env}"),
        "prod"
    );
    assert_eq!(
        s.ok(&["label", "pod", "webserver", "env-"]),
        "pod/webserver unlabeled\n"
    );
    let shown = s.ok(&["get", "pod", "webserver", "--show-labels"]);
    assert!(
        shown.lines().nth(1).unwrap().ends_with(" <none>"),
        "{shown}"
    );
    // Labels on a cluster-scoped object.
    assert_eq!(
        s.ok(&["label", "namespace", "default", "team=a"]),
        "namespace/default labeled\n"
    );
    let shown = s.ok(&["get", "ns", "default", "--show-labels"]);
    assert!(
        shown.contains("kubernetes.io/metadata.name=default,team=a"),
        "{shown}"
    );
}

#[test]
fn annotate() {
    let s = Server::start();
    s.apply(POD);
    assert_eq!(
        s.ok(&["annotate", "pod", "webserver", "description=my web server"]),
        "pod/webserver annotated\n"
    );
    assert_eq!(
        s.jsonpath(&["pod", "webserver"], "{.metadata.annotations.description}"),
        "my web server"
    );
    assert_eq!(
        s.fails(&["annotate", "pod", "webserver", "description=other"]),
        "error: --overwrite is false but found the following declared annotation(s): 'description' already has a value (my web server)\n"
    );
    assert_eq!(
        s.ok(&["annotate", "pod", "webserver", "description-"]),
        "pod/webserver annotated\n"
    );
    assert_eq!(
        s.jsonpath(&["pod", "webserver"], "{.metadata.annotations.description}"),
        ""
    );
}

#[test]
fn removing_the_last_label_drops_the_map() {
    let s = Server::start();
    s.ok(&["run", "webserver", "--image=nginx"]);
    assert_eq!(
        s.ok(&["label", "pod", "webserver", "run-"]),
        "pod/webserver unlabeled\n"
    );
    assert_eq!(s.jsonpath(&["pod", "webserver"], "{.metadata.labels}"), "");
    let yaml = s.ok(&["get", "pod", "webserver", "-o", "yaml"]);
    assert!(!yaml.contains("labels: {}"), "{yaml}");
}

#[test]
fn patch_strategic_merge_and_json() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    let patched = "deployment.apps/nginx-deployment patched\n";
    // Strategic merge: the container list merges by name.
    assert_eq!(
        s.ok(&["patch", "deployment", "nginx-deployment", "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#]),
        patched
    );
    assert_eq!(
        s.jsonpath(
            &["deploy", "nginx-deployment"],
            "{.spec.template.spec.containers[*].name}"
        ),
        "sidecar nginx"
    );
    assert_eq!(
        s.ok(&[
            "patch",
            "deployment",
            "nginx-deployment",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"web"}}}"#
        ]),
        patched
    );
    assert_eq!(
        s.jsonpath(&["deploy", "nginx-deployment"], "{.metadata.labels}"),
        r#"{"app":"nginx","tier":"web"}"#
    );
    // A merge patch replaces lists whole.
    s.ok(&[
        "patch",
        "deployment",
        "nginx-deployment",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}}"#,
    ]);
    assert_eq!(
        s.jsonpath(
            &["deploy", "nginx-deployment"],
            "{.spec.template.spec.containers[*].image}"
        ),
        "nginx:1.25"
    );
    assert_eq!(
        s.ok(&[
            "patch",
            "deployment",
            "nginx-deployment",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#
        ]),
        patched
    );
    assert_eq!(
        s.jsonpath(&["deploy", "nginx-deployment"], "{.spec.replicas}"),
        "2"
    );
    assert_eq!(
        s.ok(&[
            "patch",
            "deployment",
            "nginx-deployment",
            "-p",
            r#"{"spec":{"replicas":2}}"#
        ]),
        "deployment.apps/nginx-deployment patched (no change)\n"
    );
    assert_eq!(
        s.fails(&[
            "patch",
            "deployment",
            "missing",
            "-p",
            r#"{"spec":{"replicas":2}}"#
        ]),
        "Error from server (NotFound): deployments.apps \"missing\" not found\n"
    );
}

#[test]
fn scale_deployment_to_ten() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    assert_eq!(
        s.ok(&["scale", "deployment/nginx-deployment", "--replicas=10"]),
        "deployment.apps/nginx-deployment scaled\n"
    );
    assert_eq!(
        s.jsonpath(&["deploy", "nginx-deployment"], "{.spec.replicas}"),
        "10"
    );
    let described = s.ok(&["describe", "deployments", "nginx-deployment"]);
    assert!(
        described.contains("Replicas:               10 desired |"),
        "{described}"
    );
    assert_eq!(
        s.fails(&[
            "scale",
            "deployment/nginx-deployment",
            "--replicas=3",
            "--current-replicas=4"
        ]),
        "error: Expected replicas to be 4, was 10\n"
    );
}

#[test]
fn edit_with_an_editor_script() {
    let s = Server::start();
    s.apply(NGINX_DEPLOYMENT);
    let mut cmd = s.kubectl_cmd(&["edit", "deployment", "nginx-deployment"]);
    cmd.env("EDITOR", "sed -i 's/replicas: 3/replicas: 5/'");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deployment.apps/nginx-deployment edited\n"
    );
    assert_eq!(
        s.jsonpath(&["deploy", "nginx-deployment"], "{.spec.replicas}"),
        "5"
    );
    // An editor that changes nothing.
    let mut cmd = s.kubectl_cmd(&["edit", "deployment", "nginx-deployment"]);
    cmd.env("EDITOR", "true");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Edit cancelled, no changes made.\n"
    );
}

#[test]
fn delete_by_file_name_selector_and_all() {
    let s = Server::start();
    let f = s.write_file("deployment.yaml", NGINX_DEPLOYMENT);
    s.ok(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        s.ok(&["delete", "-f", f.to_str().unwrap()]),
        "deployment.apps \"nginx-deployment\" deleted from default namespace\n"
    );
    assert_eq!(
        s.fails(&["get", "deployment", "nginx-deployment"]),
        "Error from server (NotFound): deployments.apps \"nginx-deployment\" not found\n"
    );
    for (name, env) in [("a", "dev"), ("b", "dev"), ("c", "prod"), ("d", "prod")] {
        s.apply(&POD.replace(
            "name: webserver",
            &format!("name: {name}\n  labels:\n    env: {env}"),
        ));
    }
    let out = s.ok(&["delete", "pods", "-l", "env=dev"]);
    assert_eq!(
        out,
        "pod \"a\" deleted from default namespace\npod \"b\" deleted from default namespace\n"
    );
    assert_eq!(
        s.ok(&["delete", "pod", "c"]),
        "pod \"c\" deleted from default namespace\n"
    );
    assert_eq!(
        s.ok(&["delete", "pods", "--all"]),
        "pod \"d\" deleted from default namespace\n"
    );
    assert_eq!(
        s.run(&["get", "pods"], None).stderr,
        "No resources found in default namespace.\n"
    );
    assert_eq!(
        s.fails(&["delete", "pod", "c"]),
        "Error from server (NotFound): pods \"c\" not found\n"
    );
}

#[test]
fn deleting_a_namespace_removes_its_contents() {
    let s = Server::start();
    s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\n{}---\n{}",
        NGINX_DEPLOYMENT.replacen("metadata:\n", "metadata:\n  namespace: team\n", 1),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\n"
    ));
    assert_eq!(
        names(&s.ok(&[
            "get",
            "cm",
            "-n",
            "team",
            "--field-selector=metadata.name!=kube-root-ca.crt"
        ])),
        ["settings"]
    );
    assert_eq!(
        s.ok(&["delete", "namespace", "team"]),
        "namespace \"team\" deleted\n"
    );
    assert!(support::eventually(
        std::time::Duration::from_secs(10),
        || { !s.kubectl(&["get", "ns", "team"]).status.success() }
    ));
    assert_eq!(
        s.fails(&["get", "ns", "team"]),
        "Error from server (NotFound): namespaces \"team\" not found\n"
    );
    let all = s.ok(&["get", "deploy,cm", "-A", "-o", "name"]);
    assert!(
        !all.contains("nginx-deployment") && !all.contains("settings"),
        "{all}"
    );
}
