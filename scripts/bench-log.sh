#!/usr/bin/env bash
# Builds and runs the berth-log benchmark (log/benches/logbench.rs).
# Usage: scripts/bench-log.sh [DIR]   DIR defaults to $BERTH_LOG_BENCH_DIR or /var/tmp/berth-log-bench;
# it needs ~1.6 GiB free and should be on the disk the daemon's log will use.
# Extra arguments go to the benchmark: scripts/bench-log.sh DIR --only=durable (or nosync, replay).
set -euo pipefail
cd "$(dirname "$0")/.."
bench_dir="${1:-${BERTH_LOG_BENCH_DIR:-/var/tmp/berth-log-bench}}"
cargo bench -p berth-log --bench logbench --no-run
cargo bench -p berth-log --bench logbench -- "$bench_dir" "${@:2}"
