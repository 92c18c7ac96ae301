//! The seeds' storage, networking and security manifests, applied and read back the way the
//! notes read them.

mod support;

use support::{Server, pod_reader_role, read_pods_binding};

const STORAGE: &str = "apiVersion: v1
kind: PersistentVolume
metadata:
  name: block-pv
spec:
  capacity:
    storage: 10Gi
  accessModes:
  - ReadWriteOnce
  hostPath:
    path: /tmp/data
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: pvc
spec:
  storageClassName: manual
  accessModes:
  - ReadWriteOnce
  resources:
    requests:
      storage: 10Gi
";

const NETWORKING: &str = "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ingress-gateway
spec:
  rules:
  - host: website01.example.internal
    http:
      paths:
      - pathType: Prefix
        path: /
        backend:
          service:
            name: service1
            port:
              number: 80
  - host: website02.example.internal
    http:
      paths:
      - pathType: Prefix
        path: /
        backend:
          service:
            name: service2
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: backend-networkpolicy
  namespace: default
spec:
  podSelector:
    matchLabels:
      app: backend
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
spec:
  podSelector: {}
";

#[test]
fn persistent_volumes_and_claims() {
    let s = Server::start();
    s.apply(STORAGE);
    let pv = s.ok(&["get", "pv"]);
    assert!(
        pv.starts_with("NAME       CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS    CLAIM"),
        "{pv}"
    );
    assert!(
        pv.contains("block-pv   10Gi       RWO            Retain           Pending"),
        "{pv}"
    );
    let pvc = s.ok(&["get", "pvc"]);
    assert!(pvc.contains("pvc    Pending"), "{pvc}");
    assert!(pvc.contains("manual"), "{pvc}");
    let mode = s.ok(&["get", "pvc", "pvc", "-o", "jsonpath={.spec.volumeMode}"]);
    assert_eq!(mode, "Filesystem");
}

#[test]
fn ingress_and_network_policies() {
    let s = Server::start();
    s.apply(NETWORKING);
    let ing = s.ok(&["get", "ingress"]);
    assert!(ing.contains("ingress-gateway"), "{ing}");
    assert!(
        ing.contains("website01.example.internal,website02.example.internal"),
        "{ing}"
    );
    let describe = s.ok(&["describe", "ingress", "ingress-gateway"]);
    assert!(
        describe.contains("website01.example.internal"),
        "{describe}"
    );
    assert!(describe.contains("service1:80"), "{describe}");
    let np = s.ok(&["get", "networkpolicy"]);
    assert!(np.contains("backend-networkpolicy   app=backend"), "{np}");
    // policyTypes defaults to Ingress when not given.
    let types = s.ok(&[
        "get",
        "netpol",
        "default-deny-ingress",
        "-o",
        "jsonpath={.spec.policyTypes}",
    ]);
    assert_eq!(types, "[\"Ingress\"]");
    // A path without pathType is refused as upstream does.
    let bad = NETWORKING.split("---").next().unwrap().replace("      - pathType: Prefix\n        path: /\n        backend:\n          service:\n            name: service1", "      - path: /\n        backend:\n          service:\n            name: service1");
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        &bad.replace("ingress-gateway", "no-path-type"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pathType: Required value"), "{err}");
}

#[test]
fn roles_and_bindings() {
    let s = Server::start();
    s.apply(&format!(
        "{}---\n{}",
        pod_reader_role(r#""get", "watch", "list""#),
        read_pods_binding("jane")
    ));
    assert!(s.ok(&["get", "roles"]).contains("pod-reader"));
    let rb = s.ok(&["get", "rolebinding", "-o", "wide"]);
    assert!(
        rb.contains("read-pods") && rb.contains("Role/pod-reader") && rb.contains("jane"),
        "{rb}"
    );
    let d = s.ok(&["describe", "role", "pod-reader"]);
    assert!(d.contains("pods") && d.contains("[get watch list]"), "{d}");
    // A rule without verbs is invalid.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: bad\nrules:\n- resources: [\"pods\"]\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rules[0].verbs: Required value"));
}
