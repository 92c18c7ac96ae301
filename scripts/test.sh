#!/usr/bin/env bash
# Installs the test needs, then runs every test: unit tests, the store suite on the embedded
# backend and on a real etcd, end-to-end tests with the real kubectl, and a bounded fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
export RKUBE_KUBECTL="$PWD/.tools/kubectl"
export RKUBE_HELM="$PWD/.tools/helm"
export RKUBE_PYTHON="$PWD/.tools/venv/bin/python"
# One debug build serves everything: end-to-end tests start the rkube binary cargo builds for
# them. --no-fail-fast so one failure does not hide the others.
cargo test --workspace --no-fail-fast
