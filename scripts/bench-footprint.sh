#!/usr/bin/env bash
# bench-footprint.sh — memory that a running container costs beside itself: berth-monitor's RSS and
# PSS (from /proc/PID/smaps_rollup) against containerd-shim-runc-v2's for the same containers run
# in the same run: plain (`sleep`), with stdin kept open (-i), with a terminal (-t), and one exec
# running in a plain container (berth: the exec's own monitor; containerd: what the container's
# shim grew by when the exec started, as it serves execs itself).
#
# usage: scripts/bench-footprint.sh
# BERTH_BIN_DIR=DIR uses binaries already built there instead of a release build.
set -euo pipefail
bench_name=footprint
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "$0")/bench-lib.sh"
require_tools jq:jq runc:runc script:util-linux

exec_clients=()
readonly kinds=(plain i t)
peer_ids=("${kinds[@]/#/fp-$run_suffix-}")
bench_cleanup() {
  local pid id
  for pid in "${exec_clients[@]}"; do kill "$pid" 2>/dev/null; done
  if [[ -n ${peer_socket:-} ]]; then
    for id in "${peer_ids[@]}"; do
      { peer_ctr tasks kill -s SIGKILL "$id"; sleep 0.3; peer_ctr tasks delete "$id"; peer_ctr containers delete "$id"; } >/dev/null 2>&1
    done
  fi
}

# rollup PID: "rss_kib pss_kib" of the process.
rollup() { awk '/^Rss:/ { rss = $2 } /^Pss:/ { pss = $2 } END { print rss + 0, pss + 0 }' "/proc/$1/smaps_rollup"; }

# monitor_pid ID [--exec]: the berth-monitor of container ID (its task's, or with --exec its exec's).
monitor_pid() {
  local pid cmdline
  for pid in $(pgrep -x berth-monitor); do
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ $cmdline == *"$bench_dir/"* && $cmdline == *"--id $1 "* ]] || continue
    if [[ ${2:-} == --exec ]]; then [[ $cmdline == *" --exec"* ]] && echo "$pid"
    else [[ $cmdline != *" --exec"* ]] && echo "$pid"; fi
  done
  return 0
}

# shim_pid ID: the containerd-shim-runc-v2 serving peer container ID.
shim_pid() {
  local pid
  for pid in $(pgrep -x containerd-shim); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "-id $1( |$)" && echo "$pid"
  done
  return 0
}

start_berthd_with_busybox
start_peer
print_header "scripts/bench-footprint.sh"

# name KIND: the container of that kind, in berth and in containerd alike.
name() { echo "fp-$run_suffix-$1"; }
berth run -d --name "$(name plain)" busybox sleep 100000 >/dev/null
berth run -d -i --name "$(name i)" busybox sleep 100000 >/dev/null
berth run -d -t --name "$(name t)" busybox sleep 100000 >/dev/null
peer_ctr run -d --null-io local/busybox:latest "$(name plain)" sleep 100000 >/dev/null
peer_ctr run -d local/busybox:latest "$(name i)" sleep 100000 </dev/null >/dev/null
# ctr insists on a terminal of its own for -t, even detached: script(1) gives it one.
script -qec "ctr --address $peer_socket run -d -t local/busybox:latest $(name t) sleep 100000" /dev/null </dev/null >/dev/null
sleep 2  # let each settle after its start-up work

declare -A berth_pids shim_pids
for kind in "${kinds[@]}"; do
  berth_pids[$kind]=$(monitor_pid "$(name "$kind")")
  shim_pids[$kind]=$(shim_pid "$(name "$kind")")
  [[ -n ${berth_pids[$kind]} && -n ${shim_pids[$kind]} ]] \
    || { echo "no monitor or shim found for $kind (monitor '${berth_pids[$kind]}', shim '${shim_pids[$kind]}')" >&2; exit 1; }
done
read -r shim_rss_before_exec shim_pss_before_exec < <(rollup "${shim_pids[plain]}")

berth exec "$(name plain)" sleep 100000 </dev/null >/dev/null 2>&1 &
exec_clients+=($!)
peer_ctr task exec --exec-id fp-exec "$(name plain)" sleep 100000 </dev/null >/dev/null 2>&1 &
exec_clients+=($!)
for _ in $(seq 100); do [[ -n $(monitor_pid "$(name plain)" --exec) ]] && break; sleep 0.05; done
exec_monitor=$(monitor_pid "$(name plain)" --exec)
[[ -n $exec_monitor ]] || { echo "the exec's monitor never showed up" >&2; exit 1; }
sleep 2

echo
echo "memory per running container, KiB (from /proc/PID/smaps_rollup; PSS shares a page among the processes mapping it)"
printf '  %-28s %14s %14s %14s %14s %10s\n' container "monitor RSS" "monitor PSS" "shim RSS" "shim PSS" "PSS ratio"
for kind in "${kinds[@]}"; do
  read -r monitor_rss monitor_pss < <(rollup "${berth_pids[$kind]}")
  read -r shim_rss shim_pss < <(rollup "${shim_pids[$kind]}")
  [[ $kind == plain ]] && { shim_rss=$shim_rss_before_exec; shim_pss=$shim_pss_before_exec; }
  pss_ratio=$(ratio "$monitor_pss" "$shim_pss")
  printf '  %-28s %14s %14s %14s %14s %9s×\n' "$kind" "$monitor_rss" "$monitor_pss" "$shim_rss" "$shim_pss" "$pss_ratio"
  verdict "$kind monitor/shim (PSS)" "$pss_ratio" 0.25
  verdict "$kind monitor/shim (RSS)" "$(ratio "$monitor_rss" "$shim_rss")" 0.25
done
read -r exec_rss exec_pss < <(rollup "$exec_monitor")
read -r shim_rss_with_exec shim_pss_with_exec < <(rollup "${shim_pids[plain]}")
echo "  exec (sleep) in the plain container: its berth-monitor RSS $exec_rss, PSS $exec_pss;" \
  "the shim grew by RSS $((shim_rss_with_exec - shim_rss_before_exec)), PSS $((shim_pss_with_exec - shim_pss_before_exec))" \
  "(to $shim_rss_with_exec / $shim_pss_with_exec)"
echo "  plain container with one exec, all its processes: berth monitors PSS" \
  "$(( $(rollup "${berth_pids[plain]}" | cut -d' ' -f2) + exec_pss )), shim PSS $shim_pss_with_exec"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
