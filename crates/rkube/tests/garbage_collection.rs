//! Owner references and deletion propagation, as `kubectl delete --cascade=…` drives them.

mod support;

use std::time::Duration;

use support::{Server, eventually};

/// Creates ConfigMap `owner` and dependents owned by it.
fn owner_with_dependents(s: &Server, owner: &str, dependents: &[&str]) {
    s.ok(&["create", "configmap", owner]);
    let uid = s.ok(&["get", "cm", owner, "-o", "jsonpath={.metadata.uid}"]);
    for d in dependents {
        s.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {d}\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: {owner}\n    uid: {uid}\n"
        ));
    }
}

fn names(s: &Server) -> String {
    s.ok(&["get", "cm", "-o", "name"])
}

#[test]
fn background_deletion_removes_dependents() {
    let s = Server::start();
    owner_with_dependents(&s, "owner", &["dep-a", "dep-b"]);
    s.ok(&["delete", "cm", "owner"]);
    assert!(
        eventually(Duration::from_secs(10), || !names(&s).contains("dep-")),
        "dependents left: {}",
        names(&s)
    );
}

#[test]
fn orphan_deletion_keeps_dependents_without_the_reference() {
    let s = Server::start();
    owner_with_dependents(&s, "owner", &["dep"]);
    s.ok(&["delete", "cm", "owner", "--cascade=orphan"]);
    assert!(
        eventually(Duration::from_secs(10), || !names(&s)
            .contains("configmap/owner\n")),
        "owner not deleted: {}",
        names(&s)
    );
    assert!(names(&s).contains("configmap/dep"));
    let refs = s.ok(&[
        "get",
        "cm",
        "dep",
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ]);
    assert_eq!(refs.trim(), "");
}

#[test]
fn foreground_deletion_deletes_dependents_first() {
    let s = Server::start();
    owner_with_dependents(&s, "owner", &["dep"]);
    s.ok(&["delete", "cm", "owner", "--cascade=foreground"]);
    assert!(
        eventually(Duration::from_secs(10), || {
            let n = names(&s);
            !n.contains("configmap/owner\n") && !n.contains("configmap/dep")
        }),
        "left: {}",
        names(&s)
    );
}
