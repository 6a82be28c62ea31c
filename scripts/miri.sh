#!/usr/bin/env bash
# Runs the ring's tests under Miri (data races, aliasing, leaks). Not part of CI: Miri is a
# nightly component that may not install everywhere. Run it by hand after touching src/ring.
#
#   rustup component add --toolchain nightly miri rust-src
#   bash scripts/miri.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo +nightly miri test -p tracer-core --lib ring::
