#!/usr/bin/env bash
# Runs every test: unit and golden tests, then the end-to-end tests on the machine's node and
# again on each Node version of the matrix (installed from the npm registry).
#
#   bash scripts/test.sh                          # matrix: system node, 22, 24
#   ASYNCTRACE_NODE_MATRIX="24" bash scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v node >/dev/null || { echo "test.sh: node is not on PATH; install Node.js 20 or newer" >&2; exit 1; }

# The end-to-end tests run the built binary and addon, so build them first.
cargo build --release --workspace
cargo test --release --workspace

for v in ${ASYNCTRACE_NODE_MATRIX-22 24}; do
  node_bin=$(bash scripts/install-node.sh "$v" | tail -n 1)
  echo "== end-to-end tests on $("$node_bin" --version) =="
  ASYNCTRACE_TEST_NODE="$node_bin" cargo test --release -p e2e
done
