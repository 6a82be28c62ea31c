#!/usr/bin/env bash
# Builds the npm tarballs from a release build of asynctrace:
#
#   asynctrace-<version>.tgz                 the launcher (`bin`), selecting the platform package
#   asynctrace-linux-x64-gnu-<version>.tgz   @asynctrace/linux-x64-gnu: the binary, agent inside
#
#   bash scripts/pack-npm.sh                          # cargo build --release, tarballs in target/npm/
#   bash scripts/pack-npm.sh --out DIR                # tarballs in DIR
#   bash scripts/pack-npm.sh --binary PATH            # pack this binary, build nothing
#
# The packages' version is the binary's own (`asynctrace --version`), written into both
# package.json files and into the launcher's optionalDependencies, so the two always match.
# Only the platform this runs on is packed (linux-x64-gnu here); another platform gets its own
# folder under npm/, an entry in npm/asynctrace/bin/asynctrace.js and in the launcher's
# optionalDependencies, and this script run on (or cross-built for) that platform.
# Prints the tarballs' paths, one a line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

binary=""
out="$root/target/npm"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "pack-npm.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64-gnu ;;
  *) echo "pack-npm.sh: only linux-x64-gnu is packaged; this is $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

if [ -z "$binary" ]; then
  cargo build --release >&2
  binary="$root/target/release/asynctrace"
fi
version="$("$binary" --version | awk '{print $2}')"
[ -n "$version" ] || { echo "pack-npm.sh: cannot read the version of $binary" >&2; exit 1; }

stage="$(mktemp -d "${TMPDIR:-/tmp}/asynctrace-npm.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
cp -R npm/asynctrace "$stage/asynctrace"
cp -R "npm/$platform" "$stage/$platform"
mkdir -p "$stage/$platform/bin"
cp "$binary" "$stage/$platform/bin/asynctrace"
chmod 0755 "$stage/$platform/bin/asynctrace" "$stage/asynctrace/bin/asynctrace.js"

node - "$stage" "$version" <<'EOF'
const fs = require('fs');
const path = require('path');
const [stage, version] = process.argv.slice(2);
for (const dir of fs.readdirSync(stage)) {
  const file = path.join(stage, dir, 'package.json');
  const pkg = JSON.parse(fs.readFileSync(file, 'utf8'));
  pkg.version = version;
  for (const name of Object.keys(pkg.optionalDependencies || {})) pkg.optionalDependencies[name] = version;
  fs.writeFileSync(file, JSON.stringify(pkg, null, 2) + '\n');
}
EOF

mkdir -p "$out"
out="$(cd "$out" && pwd)"
for dir in "$platform" asynctrace; do
  name="$(cd "$stage/$dir" && npm pack --silent --pack-destination "$out" --no-update-notifier)"
  echo "$out/$name"
done
