#!/usr/bin/env bash
# bench-exec.sh — how long `berth exec ID true` takes, next to `ctr task exec --exec-id X ID true`
# against Debian's containerd in the same run: each a whole client process per call (hyperfine -N),
# into a running busybox `sleep` container in each, in interleaved rounds (berth, ctr, berth, ...)
# so a slow minute of a shared machine weighs on both alike. Also `runc exec` of the same kind
# into a bare runc container, as the floor neither can go below.
#
# usage: scripts/bench-exec.sh [N]     (calls per tool, default 60, in 3 rounds)
# BERTH_BIN_DIR=DIR uses binaries already built there instead of a release build.
set -euo pipefail
n_calls=${1:-60}
[[ $n_calls =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number of calls, got '$n_calls'" >&2; exit 2; }
bench_name=exec
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
require_tools hyperfine:hyperfine jq:jq runc:runc

runc_root=$volatile_dir/runc
exec_target=bench-exec-$run_suffix
bench_cleanup() {
  [[ -d $runc_root ]] && "$runc_bin" --root "$runc_root" delete -f "$exec_target" >/dev/null 2>&1
  [[ -n ${peer_socket:-} ]] && { peer_ctr tasks kill -s SIGKILL "$exec_target"; sleep 0.5; peer_ctr tasks delete "$exec_target"; peer_ctr containers delete "$exec_target"; } >/dev/null 2>&1
}

start_berthd_with_busybox
start_peer
berth run -d --name "$exec_target" busybox sleep 100000 >/dev/null
peer_ctr run -d --null-io local/busybox:latest "$exec_target" sleep 100000 >/dev/null
make_runc_bundle "$bench_dir/bundle" '["sleep", "100000"]' false
mkdir -p "$runc_root"
"$runc_bin" --root "$runc_root" run -d --bundle "$bench_dir/bundle" "$exec_target" </dev/null >/dev/null 2>&1

print_header "scripts/bench-exec.sh $n_calls"
readonly n_rounds=3
runs_per_round=$(( (n_calls + n_rounds - 1) / n_rounds ))
# a process.json for bare `runc exec --process`: the container's own process running `true`
jq '.process | .args = ["true"] | .terminal = false' "$bench_dir/bundle/config.json" >"$bench_dir/process-true.json"

for round in $(seq "$n_rounds"); do
  hyperfine_round berth "$round" "$berth_bin --address $berth_socket exec $exec_target true"
  hyperfine_round ctr "$round" "ctr --address $peer_socket task exec --exec-id bench-x $exec_target true"
  hyperfine_round runc "$round" "$runc_bin --root $runc_root exec --process $bench_dir/process-true.json $exec_target"
done

echo
echo "exec of \`true\` into a running container: $((n_rounds * runs_per_round)) calls each in $n_rounds interleaved rounds, ms per call (whole client process)"
printf '  %-58s %8s %8s %8s\n' command mean median p90
read -r berth_mean berth_median berth_p90 < <(pooled_ms berth)
printf '  %-58s %8s %8s %8s\n' "berth exec ID true" "$berth_mean" "$berth_median" "$berth_p90"
read -r ctr_mean ctr_median ctr_p90 < <(pooled_ms ctr)
printf '  %-58s %8s %8s %8s\n' "ctr task exec --exec-id X ID true" "$ctr_mean" "$ctr_median" "$ctr_p90"
read -r runc_mean runc_median runc_p90 < <(pooled_ms runc)
printf '  %-58s %8s %8s %8s\n' "runc exec --process P ID (bare runc, the floor)" "$runc_mean" "$runc_median" "$runc_p90"
verdict "berth/containerd (mean)" "$(ratio "$berth_mean" "$ctr_mean")" 0.5
echo "  berth/bare runc (mean): $(ratio "$berth_mean" "$runc_mean")×"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
