#!/bin/bash
# The cost of creation stacks, paired: CPU seconds (user + sys of `record` and the app) with
# `--stacks off`, the default, and the smaller budget, run back to back N times per workload.
# CPU time is less disturbed than wall time on a shared machine; the ratio is auto / off.
#
#   cargo build --release && bash scripts/bench-stacks.sh [N]
set -u
N=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/asynctrace
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpu() { # <label> <env...> -- <record args...>
  local label=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" /usr/bin/time -f "%U %S" -o "$tmp/t" "$bin" record -q "$@" -o "$tmp/t.bin" -- node "$w" >/dev/null 2>&1
  awk '{print $1 + $2}' "$tmp/t"
}
for name in promises http-load; do
  w=$root/scripts/bench-workloads/$name.js
  for i in $(seq "$N"); do
    off=$(cpu off X=1 -- --stacks off)
    auto=$(cpu auto X=1 --)
    small=$(cpu small ASYNCTRACE_STACK_BURST=1000 ASYNCTRACE_STACK_RATE=100 --)
    awk -v n="$name" -v o="$off" -v a="$auto" -v s="$small" \
      'BEGIN { printf "%-10s off %.2fs  default %.2fs (%.2fx)  burst 1000, 100/s %.2fs (%.2fx)\n", n, o, a, a / o, s, s / o }'
  done
done
