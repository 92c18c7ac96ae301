//! `kubectl create <kind>` generators and `kubectl run`, for real and as dry runs.

mod support;

use support::Server;

// kubectl v1.35's typed clients (every `kubectl create <kind>` generator) send built-in
// objects as protobuf.

#[test]
fn create_generators() {
    let s = Server::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["create", "namespace", "my-namespace"],
            "namespace/my-namespace created\n",
        ),
        (
            &[
                "create",
                "configmap",
                "app-config",
                "--from-literal=app.env=dev",
                "--from-literal=app.mem=2048m",
            ],
            "configmap/app-config created\n",
        ),
        (
            &[
                "create",
                "secret",
                "generic",
                "firstsecret",
                "--from-literal=dbpass=mypassword123",
            ],
            "secret/firstsecret created\n",
        ),
        (
            &[
                "create",
                "secret",
                "docker-registry",
                "nginx-registry-key",
                "--docker-server=registry.private.com",
                "--docker-username=user",
                "--docker-password=pass",
                "--namespace=default",
            ],
            "secret/nginx-registry-key created\n",
        ),
        (
            &["create", "deployment", "nginx-depl", "--image=nginx"],
            "deployment.apps/nginx-depl created\n",
        ),
        (
            &["create", "service", "clusterip", "test-svc", "--tcp=80:80"],
            "service/test-svc created\n",
        ),
        (
            &["create", "role", "test", "--verb=list", "--resource=pod"],
            "role.rbac.authorization.k8s.io/test created\n",
        ),
        (
            &[
                "create",
                "rolebinding",
                "reader",
                "--role=test",
                "--user=reader-user",
            ],
            "rolebinding.rbac.authorization.k8s.io/reader created\n",
        ),
        (
            &[
                "create",
                "clusterrole",
                "test",
                "--verb=list,get",
                "--resource=namespaces",
            ],
            "clusterrole.rbac.authorization.k8s.io/test created\n",
        ),
        (
            &["create", "serviceaccount", "custom-token"],
            "serviceaccount/custom-token created\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(&s.ok(args), want, "{args:?}");
    }
    assert_eq!(
        s.jsonpath(&["cm", "app-config"], "{.data}"),
        r#"{"app.env":"dev","app.mem":"2048m"}"#
    );
    assert_eq!(
        s.jsonpath(&["secret", "firstsecret"], "{.data.dbpass}"),
        "bXlwYXNzd29yZDEyMw=="
    );
    assert_eq!(
        s.jsonpath(&["secret", "nginx-registry-key"], "{.type}"),
        "kubernetes.io/dockerconfigjson"
    );
    let deploy = s.ok(&["get", "deploy", "nginx-depl", "-o", "wide"]);
    assert!(
        deploy.contains(" nginx ") && deploy.contains("app=nginx-depl"),
        "{deploy}"
    );
    assert_eq!(
        s.jsonpath(&["svc", "test-svc"], "{.spec.ports[0].name}"),
        "80-80"
    );
    let role = s.ok(&["describe", "role", "test"]);
    assert!(
        role.contains("  pods       []                 []              [list]\n"),
        "{role}"
    );
    // Creating it again is refused.
    assert_eq!(
        s.fails(&["create", "namespace", "my-namespace"]),
        "Error from server (AlreadyExists): namespaces \"my-namespace\" already exists\n"
    );
    assert_eq!(
        s.fails(&["create", "namespace", "Bad_Name"]),
        "The Namespace \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')\n"
    );
}

#[test]
fn create_from_files() {
    let s = Server::start();
    let props = s.write_file(
        "dev.properties",
        "app.env=dev\napp.mem=2048m\napp.properties=dev.env.url\n",
    );
    let creds = s.write_file("credentials.txt", "user=admin\n");
    assert_eq!(
        s.ok(&[
            "create",
            "configmap",
            "dev-properties",
            &format!("--from-file={}", props.display())
        ]),
        "configmap/dev-properties created\n"
    );
    assert_eq!(
        s.jsonpath(&["configmap", "dev-properties"], "{.data.dev\\.properties}"),
        "app.env=dev\napp.mem=2048m\napp.properties=dev.env.url\n"
    );
    let described = s.ok(&["describe", "configmap", "dev-properties"]);
    assert!(
        described.contains("dev.properties:\n----\napp.env=dev\napp.mem=2048m\n"),
        "{described}"
    );
    assert_eq!(
        s.ok(&[
            "create",
            "secret",
            "generic",
            "secondsecret",
            &format!("--from-file={}", creds.display())
        ]),
        "secret/secondsecret created\n"
    );
    let described = s.ok(&["describe", "secret", "secondsecret"]);
    assert!(
        described.contains("credentials.txt:  11 bytes"),
        "{described}"
    );
}

#[test]
fn server_dry_run_does_not_store() {
    let s = Server::start();
    let out = s.ok(&[
        "create",
        "deployment",
        "dry",
        "--image=nginx",
        "--dry-run=server",
        "-o",
        "yaml",
    ]);
    assert!(out.contains("  name: dry\n"), "{out}");
    assert!(
        out.contains("  uid: "),
        "server dry run returns the defaulted object: {out}"
    );
    assert!(out.contains("imagePullPolicy: Always"), "{out}");
    assert_eq!(
        s.fails(&["get", "deployment", "dry"]),
        "Error from server (NotFound): deployments.apps \"dry\" not found\n"
    );
}

#[test]
fn server_dry_run_apply_does_not_store() {
    let s = Server::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\ndata:\n  k: v\n";
    let out = s.ok_stdin(&["apply", "--dry-run=server", "-o", "yaml", "-f", "-"], cm);
    assert!(out.contains("  name: dry\n"), "{out}");
    assert!(out.contains("  uid: "), "{out}");
    assert_eq!(
        s.ok_stdin(&["apply", "--dry-run=server", "-f", "-"], cm),
        "configmap/dry created (server dry run)\n"
    );
    assert_eq!(
        s.fails(&["get", "configmap", "dry"]),
        "Error from server (NotFound): configmaps \"dry\" not found\n"
    );
}

#[test]
fn client_dry_run_manifests() {
    let s = Server::start();
    let role = s.ok(&[
        "create",
        "role",
        "test",
        "--verb=list",
        "--resource=pod",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        role.starts_with("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n"),
        "{role}"
    );
    assert!(
        role.ends_with(
            "rules:\n- apiGroups:\n  - \"\"\n  resources:\n  - pods\n  verbs:\n  - list\n"
        ),
        "{role}"
    );

    let rb = s.ok(&[
        "create",
        "rolebinding",
        "reader",
        "--role=test",
        "--user=reader-user",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        rb.ends_with("roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: test\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: reader-user\n"),
        "{rb}"
    );
    let cr = s.ok(&[
        "create",
        "clusterrole",
        "test",
        "--verb=list,get",
        "--resource=namespaces",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(cr.contains("kind: ClusterRole\n"), "{cr}");
    assert!(
        cr.ends_with("  resources:\n  - namespaces\n  verbs:\n  - list\n  - get\n"),
        "{cr}"
    );

    let svc = s.ok(&[
        "create",
        "service",
        "clusterip",
        "test-svc",
        "--tcp=80:80",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        svc.contains("  - name: 80-80\n    port: 80\n    protocol: TCP\n    targetPort: 80\n"),
        "{svc}"
    );
    assert!(svc.contains("  type: ClusterIP\n"), "{svc}");

    let dep = s.ok(&[
        "create",
        "deployment",
        "my-deployment",
        "--image=nginx",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(dep.contains("kind: Deployment\n"), "{dep}");
    assert!(
        dep.contains("      - image: nginx\n        name: nginx\n"),
        "{dep}"
    );

    let pod = s.ok(&[
        "run",
        "nginx-port",
        "--image=nginx",
        "--port=80",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(
        pod.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
        "{pod}"
    );
    assert!(
        pod.contains("  labels:\n    run: nginx-port\n  name: nginx-port\n"),
        "{pod}"
    );
    assert!(
        pod.contains("    ports:\n    - containerPort: 80\n"),
        "{pod}"
    );
    let pod = s.ok(&[
        "run",
        "test-pod",
        "--image=nginx:1.24",
        "--labels=env=prod",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    assert!(pod.contains("  labels:\n    env: prod\n"), "{pod}");
    // Nothing was created.
    assert_eq!(
        s.run(&["get", "pods"], None).stderr,
        "No resources found in default namespace.\n"
    );
    assert_eq!(
        s.run(&["get", "roles"], None).stderr,
        "No resources found in default namespace.\n"
    );
}

#[test]
fn run_creates_a_pending_pod() {
    let s = Server::start();
    assert_eq!(
        s.ok(&["run", "mywebserver", "--image=nginx"]),
        "pod/mywebserver created\n"
    );
    let pods = s.ok(&["get", "pods", "--show-labels"]);
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["mywebserver", "0/1", "Pending", "0"], "{pods}");
    assert_eq!(row[5], "run=mywebserver", "{pods}");
    assert_eq!(
        s.jsonpath(
            &["pod", "mywebserver"],
            "{.spec.containers[0].imagePullPolicy} {.spec.serviceAccountName} {.status.qosClass}"
        ),
        "Always default BestEffort"
    );
    let described = s.ok(&["describe", "pod", "mywebserver"]);
    assert!(
        described.starts_with("Name:             mywebserver\nNamespace:        default\n"),
        "{described}"
    );
    assert!(
        described.contains("Status:           Pending\n"),
        "{described}"
    );
    assert!(
        described.contains("    Image:        nginx\n"),
        "{described}"
    );
}
