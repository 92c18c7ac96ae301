//! The first thing a user does: start a server and list namespaces with the real kubectl.

mod support;

use support::Server;

#[test]
fn system_namespaces_exist() {
    let s = Server::start();
    let out = s.ok(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(&format!("namespace/{ns}")), "{out}");
    }
    let version = s.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"minor\": \"35\""), "{version}");
}
