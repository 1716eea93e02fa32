#!/usr/bin/env bash
# Builds and runs the replay benchmark (projections/benches/replay.rs): a ~1 GiB log of realistic
# envelopes written to a temporary directory, replayed from the page cache with the plain
# rmp-serde decode, the canonical-form reader, the parallel ordered pipeline and the full fold
# into State (with either decoder), with CPU time per event and the heap measured along the way.
# The log is removed at the end.
# Usage: scripts/bench-replay.sh [DIR] [--size-mib N] [--repeat N]   DIR defaults to $BERTH_REPLAY_BENCH_DIR or
# /var/tmp; it needs ~1.1 GiB free. Takes 1–3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p berth-projections --bench replay --no-run
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cargo bench -p berth-projections --bench replay -- "$@"
