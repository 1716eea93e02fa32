#!/usr/bin/env bash
# The whole test suite, as CI runs it (root, Debian 12): install dependencies, build the test
# images, build every binary, then run every crate's tests, including the integration tests
# that drive the real berthd, berth CLI and runc.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
bash scripts/build-test-images.sh all
export BERTH_TESTIMAGES=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
cargo build --workspace --bins --tests --locked
# Two cores: integration tests start real containers, so keep them to two at a time.
cargo test --workspace --locked -- --test-threads=2
