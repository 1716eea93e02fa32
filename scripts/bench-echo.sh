#!/usr/bin/env bash
# bench-echo.sh — what a `berth run -it` session adds to each keystroke's echo: a pty driver
# (scripts/echo_latency.py) types one key at a time into `berth run -it --rm busybox cat` and times
# until the container's terminal echoes it back; in the same run the same against bare runc with a
# terminal (`runc run -d --console-socket`, the driver receiving the terminal's master as runc's
# recvtty does and typing into it directly). Rounds alternate berth and runc; figures pool them.
#
# usage: scripts/bench-echo.sh [KEYS]     (keys per round, default 200, 3 rounds)
# BERTH_BIN_DIR=DIR uses binaries already built there instead of a release build.
set -euo pipefail
n_keys=${1:-200}
[[ $n_keys =~ ^[1-9][0-9]*$ ]] || { echo "KEYS must be a positive number, got '$n_keys'" >&2; exit 2; }
bench_name=echo
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
require_tools jq:jq runc:runc python3:python3

runc_root=$volatile_dir/runc
bench_cleanup() {
  [[ -d $runc_root ]] && for id in $("$runc_bin" --root "$runc_root" list -q 2>/dev/null); do
    "$runc_bin" --root "$runc_root" delete -f "$id" >/dev/null 2>&1
  done
}

start_berthd_with_busybox
make_runc_bundle "$bench_dir/bundle" '["cat"]' true
mkdir -p "$runc_root"
driver=$repo_dir/scripts/echo_latency.py
print_header "scripts/bench-echo.sh $n_keys"

readonly n_rounds=3
for round in $(seq "$n_rounds"); do
  python3 "$driver" client --keys "$n_keys" -- \
    "$berth_bin" --address "$berth_socket" run -it --rm busybox cat >"$bench_dir/berth.$round" </dev/null
  rm -f "$bench_dir/console.sock"
  python3 "$driver" console-socket --keys "$n_keys" --socket "$bench_dir/console.sock" -- \
    "$runc_bin" --root "$runc_root" run -d --console-socket "$bench_dir/console.sock" --bundle "$bench_dir/bundle" \
    "echo-$round" >"$bench_dir/runc.$round" </dev/null
  for _ in $(seq 100); do [[ $("$runc_bin" --root "$runc_root" state "echo-$round" 2>/dev/null | jq -r .status) == stopped ]] && break; sleep 0.05; done
  "$runc_bin" --root "$runc_root" delete -f "echo-$round" >/dev/null 2>&1 || true
done

# field NAME KEY: KEY's value on each round's line of NAME, one per line.
field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$bench_dir/$1".*; }
median_of() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

echo
echo "keystroke echo through a terminal, $n_keys keys per round, $n_rounds rounds (µs from the key written to its echo read)"
printf '  %-52s %s\n' "what" "per round: median / p99 µs"
for name in berth runc; do
  label="berth run -it --rm busybox cat (local pty)"
  [[ $name == runc ]] && label="runc run -d --console-socket (master typed into)"
  rounds=$(paste -d/ <(field "$name" median_us) <(field "$name" p99_us) | paste -sd' ')
  printf '  %-52s %s\n' "$label" "$rounds"
done
berth_median=$(field berth median_us | median_of)
runc_median=$(field runc median_us | median_of)
berth_p99=$(field berth p99_us | median_of)
runc_p99=$(field runc p99_us | median_of)
added_median=$(awk -v b="$berth_median" -v r="$runc_median" 'BEGIN { printf "%.0f", b - r }')
added_p99=$(awk -v b="$berth_p99" -v r="$runc_p99" 'BEGIN { printf "%.0f", b - r }')
echo "  median of the rounds: berth ${berth_median} µs, runc ${runc_median} µs; berth adds ${added_median} µs (p99: adds ${added_p99} µs)"
awk -v added="$added_median" 'BEGIN {
  if (added <= 1000) printf "  goal: berth adds ≤ 1000 µs to the median echo: %d µs — met\n", added
  else printf "  goal: berth adds ≤ 1000 µs to the median echo: %d µs — MISSED\n", added
}'
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
