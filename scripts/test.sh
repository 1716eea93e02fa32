#!/usr/bin/env bash
# The whole test suite, as CI runs it (root, Debian 12): install dependencies, build the test
# images, check formatting and clippy, build every binary, then run every crate's tests, including the integration tests
# that drive the real berthd, berth CLI and runc.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
bash scripts/build-test-images.sh all
export BERTH_TESTIMAGES=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
# The toolchain holds the line: formatting (rustfmt.toml) and clippy with warnings as errors.
# Both run before the tests; a failure is reported at the end, after every test has run.
lint_status=0
if ! cargo fmt --all --check; then
  echo "cargo fmt: the code is not formatted; run 'cargo fmt --all'" >&2
  lint_status=1
fi
if ! cargo clippy --workspace --all-targets --locked -- -D warnings; then
  echo "cargo clippy: warnings above; fix them (CI treats them as errors)" >&2
  lint_status=1
fi
cargo build --workspace --bins --tests --locked
# Two cores: integration tests start real containers, so keep them to two at a time.
# (--lib --bins --tests: every test target; the crates have no doc tests. --no-fail-fast: a
# failure in one crate still lets every other crate report.)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast --lib --bins --tests -- --test-threads=2 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "berth: %d passed, %d failed\n", p, f }' "$results"
if ((lint_status != 0)); then
  echo "berth: lint failed (cargo fmt --check or cargo clippy -D warnings); see above" >&2
  [ "$status" = 0 ] && status=1
fi
exit "$status"
