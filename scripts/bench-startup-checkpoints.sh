#!/usr/bin/env bash
# Builds and runs the checkpoint start-up benchmark (runtime/benches/startup_checkpoints.rs):
# for logs of 10^4, 10^5, 10^6 and 10^7 records written straight through berth-log, each with a
# vouched projection checkpoint 1,000 records before its end, berthd's start-up up to having its
# projections — full replay with the chain verified, against the checkpoint plus the tail — and
# the floor (reading and decoding the checkpoint alone). One table row per length. Each log is
# removed before the next is built.
# Usage: scripts/bench-startup-checkpoints.sh [DIR] [--sizes N,N,...] [--tail N] [--repeat N]
# DIR defaults to /var/tmp; the 10^7 log needs ~2.5 GiB free there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0
cargo bench -p berth-runtime --bench startup_checkpoints --no-run
cargo bench -p berth-runtime --bench startup_checkpoints -- "$@"
