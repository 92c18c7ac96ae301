//! Nodes beyond the server's own: static pods from the manifest directory with their mirror
//! pods, and a second `rkube agent` in its own network namespace joining and running a pod.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{BUSYBOX, Server, eventually, free_port, killall};

#[test]
fn static_pod_runs_without_the_api_and_is_mirrored() {
    let s = Server::start_node();
    let manifests = s.dir.path().join("agent/pod-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("static-web.yaml"),
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: static-web
  labels:
    role: static
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {BUSYBOX}
    command: [sh, -c, 'echo static up; sleep 2; exit 1']
"
        ),
    )
    .unwrap();
    // The mirror pod appears as <name>-<node>, owned by the Node, and shows the restarts of
    // the failing container.
    assert!(
        eventually(Duration::from_secs(60), || {
            s.jsonpath_or_empty(
                &["pod", "static-web-node-1"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .unwrap_or(0)
                >= 1
        }),
        "{}",
        s.run(&["describe", "pod", "static-web-node-1"], None)
            .stdout
    );
    let mirror = s.ok(&["get", "pod", "static-web-node-1", "-o", "yaml"]);
    assert!(mirror.contains("kubernetes.io/config.mirror"), "{mirror}");
    assert!(mirror.contains("kind: Node"), "{mirror}");
    assert!(s.ok(&["logs", "static-web-node-1"]).contains("static up"));
    // Deleting the mirror does not stop the static pod: the mirror comes back.
    s.ok(&["delete", "pod", "static-web-node-1", "--wait=false"]);
    assert!(
        eventually(Duration::from_secs(30), || {
            s.kubectl(&["get", "pod", "static-web-node-1"])
                .status
                .success()
                && s.jsonpath_or_empty(
                    &["pod", "static-web-node-1"],
                    "{.metadata.deletionTimestamp}",
                )
                .is_empty()
        }),
        "the mirror pod was not recreated"
    );
    // Removing the manifest removes the pod.
    std::fs::remove_file(manifests.join("static-web.yaml")).unwrap();
    assert!(
        eventually(Duration::from_secs(60), || {
            !s.kubectl(&["get", "pod", "static-web-node-1"])
                .status
                .success()
        }),
        "the static pod's mirror stayed after its manifest was removed"
    );
}

/// A network namespace with a veth pair to the host: host side `10.201.<n>.1`, namespace
/// side `10.201.<n>.2`. Removed on drop.
struct Netns {
    name: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create(n: u8) -> Netns {
        let name = format!("rk-test-{}-{n}", std::process::id());
        let host_if = format!("rkh{}{n}", std::process::id() % 10000);
        let ns_if = format!("rkn{}{n}", std::process::id() % 10000);
        let host_ip = format!("10.201.{n}.1");
        let ns_ip = format!("10.201.{n}.2");
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns {
            name,
            host_ip,
            ns_ip,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it the host end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `rkube agent` inside a network namespace, with its own data dir; killed and cleaned up on
/// drop.
struct NetnsAgent {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for NetnsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        killall(&self.data_dir);
    }
}

fn start_agent(s: &Server, ns: &Netns, node: &str, data_dir: &Path) -> NetnsAgent {
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    rkube_image::testing::busybox_oci_archive(&images.join("busybox.tar"), BUSYBOX).unwrap();
    let token = std::fs::read_to_string(s.dir.path().join("node-token")).unwrap();
    // nsenter switches only the network namespace (`ip netns exec` would also remount /sys,
    // hiding the host's cgroup hierarchies from the agent).
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name))
        .args(["--", env!("CARGO_BIN_EXE_rkube"), "agent"])
        .args(["--server", &format!("https://{}:{}", ns.host_ip, s.port)])
        .args(["--token", token.trim(), "--node-name", node])
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(if std::env::var("RKUBE_TEST_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("start rkube agent in the namespace");
    NetnsAgent {
        child,
        data_dir: data_dir.to_path_buf(),
    }
}

#[test]
fn an_agent_in_its_own_network_namespace_joins_and_runs_a_pod() {
    let ns = Netns::create((free_port() % 200) as u8 + 20);
    let s = Server::start_node_with(&[
        "--bind-address",
        "0.0.0.0",
        "--tls-san",
        &ns.host_ip.clone(),
    ]);
    let agent_dir = tempfile::tempdir().unwrap();
    let _agent = start_agent(&s, &ns, "node-2", agent_dir.path());
    assert!(
        eventually(Duration::from_secs(30), || {
            s.jsonpath_or_empty(
                &["node", "node-2"],
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            ) == "True"
        }),
        "node-2 did not become Ready"
    );
    assert_eq!(
        s.jsonpath(
            &["node", "node-2"],
            "{.status.addresses[?(@.type==\"InternalIP\")].address}"
        ),
        ns.ns_ip
    );
    // Servers carry the control-plane role; agents don't.
    let roles = s.ok(&["get", "nodes"]);
    assert!(roles.contains("control-plane"), "{roles}");
    s.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: on-node-2
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'echo hello from node-2; sleep 3600']
"
    ));
    let ready = s.run(
        &[
            "wait",
            "--for=condition=Ready",
            "pod/on-node-2",
            "--timeout=60s",
        ],
        None,
    );
    assert_eq!(
        ready.code,
        0,
        "{}",
        s.run(&["describe", "pod", "on-node-2"], None).stdout
    );
    // Logs and exec go through the apiserver to the agent's kubelet inside the namespace.
    assert!(
        eventually(Duration::from_secs(10), || {
            s.run(&["logs", "on-node-2"], None).stdout == "hello from node-2\n"
        }),
        "logs from node-2"
    );
    assert_eq!(
        s.ok(&["exec", "on-node-2", "--", "hostname"]).trim(),
        "on-node-2"
    );
    s.ok(&["delete", "pod", "on-node-2"]);
}

#[test]
fn a_wrong_token_is_refused_with_a_clear_error() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args([
            "agent",
            "--server",
            &s.url(),
            "--token",
            "K10nope::server:wrong",
        ])
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");
}
