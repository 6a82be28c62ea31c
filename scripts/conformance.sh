#!/usr/bin/env bash
# Conformance with Node's own tests: runs Node's test/async-hooks suite, and the async_hooks
# tests of test/parallel (test-async-hooks-*, test-async-local-storage-*, test-async-wrap-*),
# plain, under `asynctrace record` and under the reference counting hook
# (tests/support/count-hook.js), and fails if a test that passes plain fails traced or if the
# per-type counts differ.
#
#   bash scripts/conformance.sh                       # the machine's node
#   bash scripts/conformance.sh /path/to/node         # another node (22: see below)
#   CONFORMANCE_ONLY=local-storage bash scripts/conformance.sh   # tests whose path contains it
#
# The tests come from Debian's source package of Node (the `.orig` tarball, fetched from the
# Debian archive once and checked against its SHA-256), for the same major version as the node
# under test: Node 20 runs the tests of 20.19.2 (Debian 13), Node 22 those of 22.22.2 (Debian
# unstable). Only those tests, test/common and test/fixtures are unpacked, under
# .cache/conformance/ at the repo root. Set CONFORMANCE_SUITE to an unpacked Node source tree to
# use other tests (any version), and CONFORMANCE_CACHE to keep the cache elsewhere.
#
# Known failures are listed with their reason: scripts/conformance-known-plain.txt (fail without
# asynctrace on that Node version: not asynctrace's business) and
# scripts/conformance-known-traced.txt (fail under asynctrace until fixed: reported, but do not
# fail the run). Runs 2 tests at a time (CONFORMANCE_JOBS), each run limited to 60 s
# (CONFORMANCE_TIMEOUT). Needs the release build (`cargo build --release --workspace`) and curl.
set -euo pipefail

script="${BASH_SOURCE[0]}"
case "$script" in */*) sdir="${script%/*}" ;; *) sdir=. ;; esac
here="$(cd "$sdir/.." && pwd)"

die() { echo "conformance.sh: $*" >&2; exit 2; }

node_bin="${1:-node}"
version="$("$node_bin" --version 2>/dev/null)" || die "cannot run $node_bin"
major="${version#v}"
major="${major%%.*}"
asynctrace="$here/target/release/asynctrace"
[ -x "$asynctrace" ] || die "$asynctrace is missing: run \`cargo build --release --workspace\` first"

# Debian source tarballs by Node major: file name in the Debian pool, SHA-256 (from the
# Sources index of the suite named in the comment).
case "$major" in
  20) # trixie (Debian 13): nodejs 20.19.2+dfsg-1+deb13u2
    tarball="nodejs_20.19.2+dfsg.orig.tar.xz"
    sha256="5e5559381ad031d245a8efa403458abbb73755f74c3e6380f185a4dd342b7949"
    top="node-v20.19.2" ;;
  22) # sid (Debian unstable): nodejs 22.22.2+dfsg+~cs22.19.15-3
    tarball="nodejs_22.22.2+dfsg+~cs22.19.15.orig.tar.xz"
    sha256="f1a6dfca7ffe7f9f42942274adf9f0a12733977a4744a53f41b20836907c449b"
    top="node-v22.22.2" ;;
  *) tarball="" ;;
esac

cache="${CONFORMANCE_CACHE:-$here/.cache/conformance}"
mkdir -p "$cache"
if [ -n "${CONFORMANCE_SUITE:-}" ]; then
  suite="$CONFORMANCE_SUITE"
  [ -d "$suite/test/async-hooks" ] || die "CONFORMANCE_SUITE=$suite has no test/async-hooks"
else
  [ -n "$tarball" ] || die "no Debian source of Node $major is known (node $version); set CONFORMANCE_SUITE to an unpacked Node $major source tree"
  suite="$cache/$top"
  # .complete names what was unpacked: a cache from an older version of this script is redone.
  if [ "$(cat "$suite/.complete" 2>/dev/null)" != "async-hooks common fixtures parallel/test-async-*" ]; then
    command -v curl >/dev/null 2>&1 || die "curl is needed to fetch Node's tests"
    archive="$cache/$tarball"
    if ! echo "$sha256  $archive" | sha256sum -c --status 2>/dev/null; then
      url="${CONFORMANCE_MIRROR:-http://deb.debian.org/debian}/pool/main/n/nodejs/$tarball"
      echo "conformance.sh: fetching Node's tests: $url" >&2
      curl -fsSL --retry 3 -o "$archive.part" "$url" || die "cannot fetch $url (set CONFORMANCE_MIRROR to another Debian mirror, or CONFORMANCE_SUITE)"
      mv "$archive.part" "$archive"
      echo "$sha256  $archive" | sha256sum -c --status || die "$archive does not have the expected SHA-256 $sha256"
    fi
    rm -rf "$suite"
    tar -xJf "$archive" -C "$cache" --wildcards "$top/test/async-hooks" "$top/test/common" \
      "$top/test/fixtures" "$top/test/parallel/test-async-*" || die "cannot unpack $archive"
    echo "async-hooks common fixtures parallel/test-async-*" > "$suite/.complete"
    rm -f "$archive" # the unpacked tests are what is kept
  fi
fi

exec node "$here/scripts/conformance.js" \
  --node "$node_bin" \
  --suite "$suite" \
  --asynctrace "$asynctrace" \
  --jobs "${CONFORMANCE_JOBS:-2}" \
  --timeout "${CONFORMANCE_TIMEOUT:-60}" \
  --only "${CONFORMANCE_ONLY:-}" \
  --results "${CONFORMANCE_RESULTS:-$cache/results-node$major.json}"
