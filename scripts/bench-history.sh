#!/usr/bin/env bash
# Builds and runs the history benchmark (replay-tool/benches/history.rs): a ~1 GiB log of
# realistic envelopes written to a temporary directory (one container's few events spread over
# it), then `berth-replay history --container` and `events --container` timed from the page
# cache, beside decoding and folding every record (how they worked before the raw prefilter) and
# the floor of reading every record with its CRC checked. The log is removed at the end.
# Usage: scripts/bench-history.sh [DIR] [--size-mib N] [--repeat N]   DIR defaults to /var/tmp;
# it needs ~1.1 GiB free. Takes 1–3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_INCREMENTAL=0 cargo bench -p berth-replay --bench history --no-run
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
CARGO_INCREMENTAL=0 cargo bench -p berth-replay --bench history -- "$@"
