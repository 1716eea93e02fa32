#!/usr/bin/env bash
# Builds and runs the start-up benchmark (runtime/benches/startup.rs): a 1,000,000-record log of
# realistic envelopes in a temporary directory, then berthd's start-up work (log open with its
# anchor, replay into the projections) timed without and with the hash chain verified beside
# replay, alternating; prints both medians and the ratio (goal <= 1.25x). The log is removed at
# the end.
# Usage: scripts/bench-startup.sh [DIR] [--records N] [--repeat N]   DIR defaults to /var/tmp;
# it needs ~300 MiB free.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
cargo bench -p berth-runtime --bench startup --no-run
cargo bench -p berth-runtime --bench startup -- "$@"
