#!/usr/bin/env bash
# bench-pull.sh — how long `berth image pull` takes next to `ctr images pull --plain-http` (Debian's
# containerd, scripts/peer-containerd.sh) pulling the same image from the same loopback registry
# (Debian's docker-registry, scripts/registry.sh), each into a fresh root, in the same run.
#
# usage: scripts/bench-pull.sh [IMAGE] [RUNS]   IMAGE: a test image (default debian, ~91 MB gzip,
#        one layer; busybox, layers), RUNS: rounds, alternating berth and ctr (default 3)
#
# Both pull and unpack (ctr unpacks for the host platform by default; berth always does). Prints
# each run's wall time, the medians and their ratio, and berthd's peak RSS (VmHWM) per pull.
# Uses the release binaries (built here unless BERTH_BIN_DIR names a directory that has them).
set -euo pipefail
image=${1:-debian}
runs=${2:-3}
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
peer=$repo_dir/scripts/peer-containerd.sh
[[ $(id -u) -eq 0 ]] || { echo "run this as root" >&2; exit 1; }
[[ -f $images_dir/$image-oci.tar ]] || { echo "$images_dir/$image-oci.tar is missing: run scripts/build-test-images.sh all" >&2; exit 1; }
bin_dir=${BERTH_BIN_DIR:-$repo_dir/target/release}
if [[ -z ${BERTH_BIN_DIR:-} ]]; then
  CARGO_INCREMENTAL=0 cargo build --release -p berth-runtime --bins >&2
fi

work=$(mktemp -d /var/tmp/berth-bench-pull.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
berthd_pid=""
cleanup() {
  [[ -n $berthd_pid ]] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null || true
  bash scripts/registry.sh stop "$work/registry" || true
  PEER_CONTAINERD_DIR=$work/containerd "$peer" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash scripts/registry.sh start "$work/registry" "$port"
bash scripts/registry.sh push "$work/registry" "$port" "$images_dir/$image-oci.tar" "bench/$image:1"
reference=127.0.0.1:$port/bench/$image:1
echo "pulling $reference ($(du -h "$images_dir/$image-oci.tar" | cut -f1) archive)"

now_ms() { date +%s%3N; }
berth_times=(); ctr_times=(); peaks=()
for round in $(seq "$runs"); do
  # berth: a fresh root and berthd for each pull.
  root=$work/berth-$round
  "$bin_dir/berthd" --root "$root/root" --state "$root/state" --address "$root/berthd.sock" \
    --cgroup-parent "/berth-bench-pull-$round" >"$root.log" 2>&1 &
  berthd_pid=$!
  for _ in $(seq 100); do "$bin_dir/berth" --address "$root/berthd.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  # The previous round's writes and deletions are flushed first, so they are not timed here.
  sync
  start=$(now_ms)
  "$bin_dir/berth" --address "$root/berthd.sock" image pull --quiet "$reference" >/dev/null
  berth_times+=($(( $(now_ms) - start )))
  peaks+=("$(awk '/VmHWM/ {print $2 / 1024 " MiB"}' /proc/$berthd_pid/status)")
  kill "$berthd_pid"; wait "$berthd_pid" 2>/dev/null || true; berthd_pid=""
  rm -rf "$root"

  # containerd: a fresh root for each pull as well.
  export PEER_CONTAINERD_DIR=$work/containerd
  "$peer" start >/dev/null
  sync
  start=$(now_ms)
  "$peer" ctr images pull --plain-http "$reference" >/dev/null
  ctr_times+=($(( $(now_ms) - start )))
  "$peer" stop >/dev/null
  echo "round $round: berth ${berth_times[-1]} ms (berthd peak RSS ${peaks[-1]}), ctr ${ctr_times[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
berth_median=$(median "${berth_times[@]}")
ctr_median=$(median "${ctr_times[@]}")
# The yardstick for MB/s: this machine's single-core gunzip of the image's largest layer.
largest=$(tar -tvf "$images_dir/$image-oci.tar" | sort -k3 -n | tail -1 | awk '{print $NF}')
tar -xOf "$images_dir/$image-oci.tar" "$largest" >"$work/largest.gz"
compressed_bytes=$(stat -c %s "$work/largest.gz")
start=$(now_ms); gzip -dc "$work/largest.gz" >/dev/null; gunzip_ms=$(( $(now_ms) - start ))
echo "largest layer: $((compressed_bytes / 1000000)) MB compressed; gunzip alone $gunzip_ms ms ($(awk -v b="$compressed_bytes" -v t="$gunzip_ms" 'BEGIN { printf "%.0f", b / 1000 / t }') MB/s compressed)"
echo "berth pull rate: $(awk -v b="$compressed_bytes" -v t="$(median "${berth_times[@]}")" 'BEGIN { printf "%.0f", b / 1000 / t }') MB/s of the largest layer's compressed bytes over the whole pull"
echo "median: berth $berth_median ms, ctr $ctr_median ms, ratio $(awk -v b="$berth_median" -v c="$ctr_median" 'BEGIN { printf "%.2f", b / c }')x"
