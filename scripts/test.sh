#!/usr/bin/env bash
# Installs the test needs, then runs every test: unit tests, the store suite on the embedded
# backend and on a real etcd, end-to-end tests with the real kubectl, and a bounded fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
export RKUBE_KUBECTL="$PWD/.tools/kubectl"
export RKUBE_HELM="$PWD/.tools/helm"
export RKUBE_PYTHON="$PWD/.tools/venv/bin/python"
cargo build --release --bin rkube
cargo test --release --workspace --no-fail-fast -- --test-threads=4
