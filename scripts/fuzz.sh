#!/usr/bin/env bash
# Runs each fuzz target for a while (default 60 s). Not part of CI: cargo-fuzz needs nightly.
#
#   cargo install cargo-fuzz && bash scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-60}
for target in trace_reader ring_records; do
  cargo +nightly fuzz run "$target" -- -max_total_time="$secs"
done
