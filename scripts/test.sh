#!/usr/bin/env bash
# Runs every test: unit, golden and end-to-end tests on the machine's node, conformance with
# Node's own async_hooks tests on that node, then the end-to-end tests again on each Node
# version of the matrix (installed from the npm registry into .node-versions/).
#
#   bash scripts/test.sh                                  # matrix: 22, 24, 26
#   ASYNCTRACE_NODE_MATRIX="24" bash scripts/test.sh      # choose the matrix ("" for none)
#   ASYNCTRACE_CONFORMANCE_MATRIX="22" bash scripts/test.sh   # conformance on these too
#   ASYNCTRACE_CONFORMANCE=0 bash scripts/test.sh         # skip conformance (needs the network once)
#
# Every step runs even when an earlier one failed (a failing Node version must not hide the
# others' results); the summary at the end lists each step, and the exit status is non-zero
# if any failed. Only a failed build stops it at once: nothing could be tested.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v node >/dev/null || { echo "test.sh: node is not on PATH; install Node.js 20 or newer" >&2; exit 1; }

# The end-to-end tests run the built binary (the agent is embedded in it), so build it first.
# The default members: tracer-cli's build script builds the agent addon once; `--workspace`
# would build the tracer-agent member a second time for nothing.
if ! cargo build --release; then
  echo "test.sh: the build failed; nothing was tested" >&2
  exit 1
fi

results=()
failed=0
step() {
  local name="$1"
  shift
  echo
  echo "== $name =="
  if "$@"; then
    results+=("ok    $name")
  else
    results+=("FAIL  $name")
    failed=1
  fi
}

# The terminal UI's end-to-end tests drive it in tmux (the browser test installs its own
# Chromium through scripts/ensure-chromium.sh).
bash scripts/ensure-tmux.sh || true

system_node="$(node --version)"
# --no-fail-fast: one failing test file must not keep the others from running.
step "unit, golden and end-to-end tests on node $system_node" cargo test --release --workspace --no-fail-fast
# The release artefacts: the npm tarballs, in target/npm/ (tests/install.rs installs and runs
# them; this checks the script as a release runs it).
step "npm tarballs (scripts/pack-npm.sh)" bash scripts/pack-npm.sh
if [ "${ASYNCTRACE_CONFORMANCE-1}" != 0 ]; then
  step "conformance with Node's async_hooks tests on node $system_node" bash scripts/conformance.sh node
fi

conformance_matrix=" ${ASYNCTRACE_CONFORMANCE_MATRIX-} "
for v in ${ASYNCTRACE_NODE_MATRIX-22 24 26}; do
  if ! node_bin=$(bash scripts/install-node.sh "$v" | tail -n 1) || [ -z "$node_bin" ]; then
    results+=("FAIL  install Node $v (scripts/install-node.sh $v)")
    failed=1
    continue
  fi
  ver="$("$node_bin" --version)"
  step "end-to-end tests on node $ver" env ASYNCTRACE_TEST_NODE="$node_bin" cargo test --release -p e2e --no-fail-fast
  case "$conformance_matrix" in
    *" $v "*) step "conformance with Node's async_hooks tests on node $ver" bash scripts/conformance.sh "$node_bin" ;;
  esac
done

echo
echo "== summary =="
printf '%s\n' "${results[@]}"
exit "$failed"
