"""The Python `kubernetes` client against a real rkube server (KUBECONFIG is set by the
Rust test in crates/rkube/tests/clients.rs). Exits non-zero on the first failed check."""

import sys
import threading
import time

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as e:  # pragma: no cover
    sys.exit(f"the `kubernetes` Python package is missing ({e}): run scripts/install-test-deps.sh")

NS = "py-test"
# With --omit-kind, bodies carry no apiVersion/kind (as most Python code builds them); the
# server must default them from the URL as upstream does.
OMIT_KIND = "--omit-kind" in sys.argv[1:]


def typed(obj, api_version, kind):
    if not OMIT_KIND:
        obj.api_version = api_version
        obj.kind = kind
    return obj


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    # List namespaces.
    names = [n.metadata.name for n in core.list_namespace().items]
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        check(ns in names, f"namespace {ns} missing from {names}")

    core.create_namespace(
        typed(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)), "v1", "Namespace")
    )

    # Create a ConfigMap, read it back.
    created = core.create_namespaced_config_map(
        NS,
        typed(
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="settings", labels={"app": "py"}),
                data={"mode": "fast"},
            ),
            "v1",
            "ConfigMap",
        ),
    )
    check(created.metadata.uid, "no uid on created ConfigMap")
    got = core.read_namespaced_config_map("settings", NS)
    check(got.data == {"mode": "fast"}, f"data read back: {got.data}")

    # A duplicate create is a 409 the client raises as ApiException.
    try:
        core.create_namespaced_config_map(
            NS,
            typed(client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings")), "v1", "ConfigMap"),
        )
        raise AssertionError("duplicate create succeeded")
    except ApiException as e:
        check(e.status == 409, f"duplicate create status {e.status}")

    # Create a Deployment; defaults come back.
    dep = typed(client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="nginx", image="nginx:1.27")]
                ),
            ),
        ),
    ), "apps/v1", "Deployment")
    d = apps.create_namespaced_deployment(NS, dep)
    check(d.spec.replicas == 2, f"replicas {d.spec.replicas}")
    check(d.spec.strategy is not None and d.spec.strategy.type == "RollingUpdate",
          f"strategy not defaulted: {d.spec.strategy}")
    deps = [x.metadata.name for x in apps.list_namespaced_deployment(NS).items]
    check(deps == ["web"], f"deployments listed: {deps}")

    # Patch (the client sends strategic merge patch for a dict body).
    p = apps.patch_namespaced_deployment("web", NS, {"spec": {"replicas": 3}})
    check(p.spec.replicas == 3, f"patched replicas {p.spec.replicas}")

    # Watch: an event for a ConfigMap created after the watch started.
    rv = core.list_namespaced_config_map(NS).metadata.resource_version
    w = watch.Watch()
    seen = []

    def create_later():
        time.sleep(0.5)
        core.create_namespaced_config_map(
            NS,
            typed(
                client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"), data={"k": "v"}),
                "v1",
                "ConfigMap",
            ),
        )

    t = threading.Thread(target=create_later)
    t.start()
    deadline = time.time() + 20
    for ev in w.stream(
        core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=15
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "ADDED" and ev["object"].metadata.name == "watched":
            check(ev["object"].data == {"k": "v"}, f"watched data {ev['object'].data}")
            w.stop()
            break
        if time.time() > deadline:
            w.stop()
            break
    t.join()
    check(("ADDED", "watched") in seen, f"watch saw {seen}")

    # Delete.
    core.delete_namespaced_config_map("watched", NS)
    try:
        core.read_namespaced_config_map("watched", NS)
        raise AssertionError("read after delete succeeded")
    except ApiException as e:
        check(e.status == 404, f"read after delete status {e.status}")

    print("PYTHON CLIENT OK")


if __name__ == "__main__":
    main()
