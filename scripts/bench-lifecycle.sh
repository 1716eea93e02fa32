#!/usr/bin/env bash
# bench-lifecycle.sh — how long berth takes to run a container, next to Debian's containerd and bare
# runc measured in the same run on the same machine, and how long berthd takes to come back after a
# SIGKILL with 100 containers running.
#
# usage: scripts/bench-lifecycle.sh [N]     (N containers per lifecycle workload, default 30)
#
# It builds the release binaries (or takes them from $BERTH_BIN_DIR), starts a berthd on a
# temporary directory under /var/tmp (its --state on a tmpfs there) with a socket of its own, starts the peer containerd (scripts/peer-containerd.sh), and prints:
#   1. sequential lifecycle: ms per `berth run --rm busybox /bin/true`, per
#      `ctr run --rm local/busybox:latest ID /bin/true` and per bare `runc run` of a ready bundle,
#      each a whole client process (hyperfine -N); then berth's lifecycle one RPC-sized step at a time
#   2. the same lifecycles four at a time (xargs -P4): wall time / N
#   (1 and 2 run the three workloads in three interleaved rounds of N/3 each, pooled)
#   3. restart: 100 detached `sleep 100000` containers, SIGKILL the daemon, start it again, and time
#      until its client lists all 100 as running; for berthd and for containerd
# Needs root, runc, hyperfine and jq (installed with apt-get when missing). Everything it starts is
# stopped and everything it mounts is unmounted on exit, even on failure or Ctrl-C.
# berth's containers get `--network none` throughout: berth's CLI attaches the bridge network by
# default, while `ctr run` without --cni leaves the container a namespace with loopback only,
# which is what none gives (scripts/bench-network.sh measures the bridge network against ctr --cni).
# Figures from one run are recorded in BENCHMARKS.md.
set -euo pipefail

n_containers=${1:-30}
[[ $n_containers =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number of containers, got '$n_containers'" >&2; exit 2; }
readonly n_restart=100 n_workers=4
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
peer=$repo_dir/scripts/peer-containerd.sh
# shellcheck source=scripts/bench-helpers.sh
source "$repo_dir/scripts/bench-helpers.sh"

if [[ $(id -u) -ne 0 ]]; then
  echo "run this as root: containers need namespaces, mounts and cgroups" >&2
  exit 1
fi

require_tools hyperfine:hyperfine jq:jq runc:runc
runc_bin=$(command -v runc)

release_bin_dir
berthd_bin=$bin_dir/berthd
berth_bin=$bin_dir/berth

[[ -s $images_dir/busybox-oci.tar ]] || bash scripts/build-test-images.sh busybox >&2

bench_dir=$(mktemp -d /var/tmp/berth-bench-lifecycle.XXXXXX)
berth_socket=$bench_dir/berthd.sock
runc_root=
bundle_dir=$bench_dir/bundle
berthd_pid=

cleanup() {
  set +e
  trap - EXIT INT TERM
  echo "cleaning up" >&2
  stop_berthd_and_its_containers
  # before the tmpfs its state is on goes
  bash "$peer" stop
  # monitors (and through them their containers) that outlived a failed run: end them by pid
  for pid in $(pids_naming_bench_dir); do kill -9 "$pid" 2>/dev/null; done
  if [[ -d $runc_root ]]; then
    for id in $("$runc_bin" --root "$runc_root" list -q 2>/dev/null); do
      "$runc_bin" --root "$runc_root" delete -f "$id" >/dev/null 2>&1
    done
  fi
  awk -v prefix="$bench_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$bench_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_volatile_state
runc_root=$volatile_dir/runc

# ---- helpers -----------------------------------------------------------------------------------

now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
ms_from_us() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }

start_berthd() {
  setsid "$berthd_bin" --root "$bench_dir/root" --state "$volatile_dir/berth" --address "$berth_socket" \
    --runc "$runc_bin" >>"$bench_dir/berthd.log" 2>&1 </dev/null &
  berthd_pid=$!
  disown "$berthd_pid"  # the SIGKILL below is on purpose; no "Killed" notice from bash
}

# wait_until SECONDS COMMAND...: polls COMMAND every 10 ms until it succeeds; false on timeout. The
# pause leaves the CPU to the daemon being timed (two cores here).
wait_until() {
  local deadline=$(( $(now_us) + $1 * 1000000 )); shift
  until "$@"; do
    (( $(now_us) < deadline )) || return 1
    sleep 0.01
  done
}

berth_answers() { berth version >/dev/null 2>&1; }
n_berth_running() {
  berth ps -a --output json 2>/dev/null | jq '[.[] | select(.task.status == "running")] | length' 2>/dev/null || echo 0
}
berth_all_running() { (( $(n_berth_running) == n_restart )); }
n_peer_running() {
  { peer_ctr --connect-timeout 50ms tasks ls 2>/dev/null || true; } | awk '$3 == "RUNNING" { n++ } END { print n + 0 }'
}
peer_all_running() { (( $(n_peer_running) == n_restart )); }
peer_answers() { peer_ctr --connect-timeout 50ms version >/dev/null 2>&1; }

# The three workloads of sections 1 and 2 are measured in $n_rounds interleaved rounds (berth,
# containerd, runc, berth, ...), so that a slow minute of this shared machine weighs on all three
# alike instead of on whichever ran then; figures pool every round.
readonly n_rounds=3
runs_per_round=$(( (n_containers + n_rounds - 1) / n_rounds ))

# parallel_us COMMAND-WITH-{}: one round of runs, n_workers at a time, {} replaced by a number
# unique over all rounds; prints the wall time in µs.
parallel_us() {
  local t0 t1
  t0=$(now_us)
  seq "$((parallel_round * runs_per_round + 1))" "$(((parallel_round + 1) * runs_per_round))" \
    | xargs -P "$n_workers" -I{} "$@" >/dev/null
  t1=$(now_us)
  echo $((t1 - t0))
}

# ---- set up ------------------------------------------------------------------------------------

start_berthd
wait_until 10 berth_answers || { echo "berthd did not answer; log: $bench_dir/berthd.log" >&2; cat "$bench_dir/berthd.log" >&2; exit 1; }
berth image import "$images_dir/busybox-oci.tar" --name busybox >/dev/null

bash "$peer" start >&2
peer_socket=$(bash "$peer" address)

# A bundle for bare runc: the busybox layer unpacked once, runc's default spec running /bin/true.
mkdir -p "$bench_dir/oci" "$bundle_dir/rootfs" "$runc_root"
tar -xf "$images_dir/busybox-oci.tar" -C "$bench_dir/oci"
manifest_digest=$(jq -r '.manifests[0].digest' "$bench_dir/oci/index.json")
for layer_digest in $(jq -r '.layers[].digest' "$bench_dir/oci/blobs/sha256/${manifest_digest#sha256:}"); do
  tar -xf "$bench_dir/oci/blobs/sha256/${layer_digest#sha256:}" -C "$bundle_dir/rootfs"
done
(cd "$bundle_dir" && "$runc_bin" spec)
jq '.process.terminal = false | .process.args = ["/bin/true"]' "$bundle_dir/config.json" >"$bundle_dir/config.json.new"
mv "$bundle_dir/config.json.new" "$bundle_dir/config.json"

git_revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo '+uncommitted changes')"
echo
echo "berth lifecycle benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), berth $git_revision"
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: $(containerd --version | awk '{ print "containerd", $3 }'), $("$runc_bin" --version | head -1)"
echo "command: scripts/bench-lifecycle.sh $n_containers"

# ---- 1. sequential lifecycle -------------------------------------------------------------------

echo
echo "1. lifecycle, sequential: $((n_rounds * runs_per_round)) containers each in $n_rounds interleaved rounds, ms per container (whole client process)"
printf '  %-58s %8s %8s %8s\n' workload mean median p90
for round in $(seq "$n_rounds"); do
  hyperfine_round berth "$round" "$berth_bin --address $berth_socket run --rm --network none busybox /bin/true"
  hyperfine_round ctr "$round" "ctr --address $peer_socket run --rm local/busybox:latest bench-seq /bin/true"
  hyperfine_round runc "$round" "$runc_bin --root $runc_root run --bundle $bundle_dir bench-seq"
done
read -r berth_mean berth_median berth_p90 < <(pooled_ms berth)
printf '  %-58s %8s %8s %8s\n' "berth run --rm --network none busybox /bin/true" "$berth_mean" "$berth_median" "$berth_p90"
read -r ctr_mean ctr_median ctr_p90 < <(pooled_ms ctr)
printf '  %-58s %8s %8s %8s\n' "ctr run --rm local/busybox:latest ID /bin/true" "$ctr_mean" "$ctr_median" "$ctr_p90"
read -r runc_mean runc_median runc_p90 < <(pooled_ms runc)
printf '  %-58s %8s %8s %8s\n' "runc run --bundle B ID (ready bundle, /bin/true)" "$runc_mean" "$runc_median" "$runc_p90"
verdict "berth/containerd (mean)" "$(ratio "$berth_mean" "$ctr_mean")" 0.4
verdict "berth/bare runc (mean)" "$(ratio "$berth_mean" "$runc_mean")" 1.2

# The same lifecycle as separate CLI calls, one per RPC, to see where berth's time goes.
create_us=0 start_us=0 wait_us=0 rm_us=0
for i in $(seq "$n_containers"); do
  t0=$(now_us); berth create --network none --name "step-$i" busybox /bin/true >/dev/null
  t1=$(now_us); berth start "step-$i" >/dev/null
  t2=$(now_us); berth wait "step-$i" >/dev/null
  t3=$(now_us); berth rm "step-$i" >/dev/null
  t4=$(now_us)
  create_us=$((create_us + t1 - t0)) start_us=$((start_us + t2 - t1))
  wait_us=$((wait_us + t3 - t2)) rm_us=$((rm_us + t4 - t3))
done
echo "  berth, one CLI call per step (mean ms): create $(ms_from_us $((create_us / n_containers)))," \
  "start $(ms_from_us $((start_us / n_containers))), wait $(ms_from_us $((wait_us / n_containers)))," \
  "rm $(ms_from_us $((rm_us / n_containers))); sum $(ms_from_us $(((create_us + start_us + wait_us + rm_us) / n_containers)))"
detach_us=0 rmf_us=0
for i in $(seq "$n_containers"); do
  t0=$(now_us); berth run -d --network none --name "detach-$i" busybox /bin/true >/dev/null
  t1=$(now_us); berth rm -f "detach-$i" >/dev/null
  t2=$(now_us)
  detach_us=$((detach_us + t1 - t0)) rmf_us=$((rmf_us + t2 - t1))
done
echo "  berth run -d then rm -f (mean ms): run -d $(ms_from_us $((detach_us / n_containers))), rm -f $(ms_from_us $((rmf_us / n_containers)))"

# ---- 2. four at a time -------------------------------------------------------------------------

echo
echo "2. lifecycle, $n_workers at a time: $((n_rounds * runs_per_round)) containers each in $n_rounds interleaved rounds, wall time / containers in ms"
berth_par_us=0 ctr_par_us=0 runc_par_us=0
for parallel_round in $(seq 0 $((n_rounds - 1))); do
  berth_par_us=$((berth_par_us + $(parallel_us "$berth_bin" --address "$berth_socket" run --rm --network none busybox /bin/true)))
  ctr_par_us=$((ctr_par_us + $(parallel_us ctr --address "$peer_socket" run --rm local/busybox:latest bench-par-{} /bin/true)))
  runc_par_us=$((runc_par_us + $(parallel_us "$runc_bin" --root "$runc_root" run --bundle "$bundle_dir" bench-par-{})))
done
n_parallel=$((n_rounds * runs_per_round))
berth_par=$(ms_from_us $((berth_par_us / n_parallel)))
ctr_par=$(ms_from_us $((ctr_par_us / n_parallel)))
runc_par=$(ms_from_us $((runc_par_us / n_parallel)))
printf '  %-58s %8s\n' "berth run --rm --network none busybox /bin/true" "$berth_par"
printf '  %-58s %8s\n' "ctr run --rm local/busybox:latest ID /bin/true" "$ctr_par"
printf '  %-58s %8s\n' "runc run --bundle B ID" "$runc_par"
verdict "berth/containerd" "$(ratio "$berth_par" "$ctr_par")" 0.4
verdict "berth/bare runc" "$(ratio "$berth_par" "$runc_par")" 1.2

# ---- 3. restart with running containers --------------------------------------------------------

echo
echo "3. restart with $n_restart running containers (sleep 100000): SIGKILL the daemon, start it again"
t0=$(now_us)
for i in $(seq "$n_restart"); do berth run -d --network none --name "c$i" busybox sleep 100000 >/dev/null; done
t1=$(now_us)
berth_all_running || { echo "berth: only $(n_berth_running) of $n_restart running before the restart" >&2; exit 1; }
berth_start_ms=$(ms_from_us $(( (t1 - t0) / n_restart )))
kill -9 "$berthd_pid"
while kill -0 "$berthd_pid" 2>/dev/null; do sleep 0.01; done
t0=$(now_us)
start_berthd
wait_until 60 berth_answers || { echo "berthd did not answer within 60 s after the restart" >&2; exit 1; }
t1=$(now_us)
wait_until 60 berth_all_running || { echo "berth: $(n_berth_running) of $n_restart running 60 s after the restart" >&2; exit 1; }
t2=$(now_us)
berth_answer_ms=$(ms_from_us $((t1 - t0))) berth_restart_ms=$(ms_from_us $((t2 - t0)))
t0=$(now_us)
mapfile -t restart_ids < <(seq -f 'c%g' "$n_restart")
berth rm -f "${restart_ids[@]}" >/dev/null
t1=$(now_us)
berth_rm_ms=$(ms_from_us $((t1 - t0)))

t0=$(now_us)
for i in $(seq "$n_restart"); do peer_ctr run -d --null-io local/busybox:latest "c$i" sleep 100000 >/dev/null; done
t1=$(now_us)
peer_all_running || { echo "containerd: only $(n_peer_running) of $n_restart running before the restart" >&2; exit 1; }
ctr_start_ms=$(ms_from_us $(( (t1 - t0) / n_restart )))
containerd_pid=$(bash "$peer" pid)
kill -9 "$containerd_pid"
while kill -0 "$containerd_pid" 2>/dev/null; do sleep 0.01; done
t0=$(now_us)
bash "$peer" launch
wait_until 60 peer_answers || { echo "containerd did not answer within 60 s after the restart" >&2; exit 1; }
t1=$(now_us)
wait_until 60 peer_all_running || { echo "containerd: $(n_peer_running) of $n_restart running 60 s after the restart" >&2; exit 1; }
t2=$(now_us)
ctr_answer_ms=$(ms_from_us $((t1 - t0))) ctr_restart_ms=$(ms_from_us $((t2 - t0)))
t0=$(now_us)
peer_ctr tasks delete --force "${restart_ids[@]}" >/dev/null 2>&1  # it warns about every exit 137
peer_ctr containers delete "${restart_ids[@]}" >/dev/null
t1=$(now_us)
ctr_rm_ms=$(ms_from_us $((t1 - t0)))

printf '  %-40s %16s %16s %22s %16s\n' daemon "answers after" "all $n_restart running" "run -d, ms/container" "remove all $n_restart"
printf '  %-40s %13s ms %13s ms %22s %13s ms\n' "berthd" "$berth_answer_ms" "$berth_restart_ms" "$berth_start_ms" "$berth_rm_ms"
printf '  %-40s %13s ms %13s ms %22s %13s ms\n' "containerd" "$ctr_answer_ms" "$ctr_restart_ms" "$ctr_start_ms" "$ctr_rm_ms"
echo "  (times from exec of the restarted daemon; polled with the daemon's own client, so each figure is late by up to one client call)"
echo "  berthd/containerd, time until all $n_restart running: $(ratio "$berth_restart_ms" "$ctr_restart_ms")×"
