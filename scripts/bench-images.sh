#!/usr/bin/env bash
# bench-images.sh — how long berth takes to import and unpack an image archive, next to Debian's
# containerd (`ctr images import`, which also unpacks) measured in the same run, each on a fresh
# root every round.
#
# usage: scripts/bench-images.sh [ROUNDS] [ARCHIVE]
#        (default 3 rounds of the Debian minbase OCI archive, $BERTH_TESTIMAGES/debian-oci.tar)
#
# It builds the release binaries and, per round, interleaved: starts a berthd on a new temporary
# root, times `berth image import ARCHIVE` (wall clock, client process start to exit), reads
# berthd's peak RSS (VmHWM) right after; then starts a new peer containerd
# (scripts/peer-containerd.sh start, on its own directory) and times `ctr images import` of the
# same file. It prints each round, the medians, berth/ctr, berth's MB/s over the archive's size
# beside this machine's single-core `gzip -dc` rate for the same archive's layers, and the peak RSS.
# Needs root (unpacking keeps owners), containerd and ctr (scripts/peer-containerd.sh installs them).
# Everything it starts is stopped and removed on exit, even on failure or Ctrl-C.
set -euo pipefail

rounds=${1:-3}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive number, got '$rounds'" >&2; exit 2; }
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
archive=${2:-$images_dir/debian-oci.tar}
peer=$repo_dir/scripts/peer-containerd.sh

if [[ $(id -u) -ne 0 ]]; then
  echo "run this as root: unpacking an image keeps its owners and device files" >&2
  exit 1
fi
[[ -s $archive ]] || bash scripts/build-test-images.sh debian >&2

echo "building release binaries" >&2
CARGO_INCREMENTAL=0 cargo build --release --bins -p berth-runtime --quiet
berthd_bin=$repo_dir/target/release/berthd
berth_bin=$repo_dir/target/release/berth

bench_dir=$(mktemp -d /var/tmp/berth-bench-images.XXXXXX)
berth_socket=$bench_dir/berthd.sock
berthd_pid=
peer_dir=

stop_berthd() {
  [[ -n $berthd_pid ]] || return 0
  kill "$berthd_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$berthd_pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$berthd_pid" 2>/dev/null || true
  berthd_pid=
}
stop_peer() {
  [[ -n $peer_dir ]] || return 0
  PEER_CONTAINERD_DIR=$peer_dir bash "$peer" stop >/dev/null 2>&1 || true
  peer_dir=
}
cleanup() {
  trap - EXIT INT TERM
  stop_berthd
  stop_peer
  awk -v prefix="$bench_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$bench_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

start_berthd() {
  rm -rf "$bench_dir/root" "$bench_dir/state"
  setsid "$berthd_bin" --root "$bench_dir/root" --state "$bench_dir/state" --address "$berth_socket" \
    >>"$bench_dir/berthd.log" 2>&1 </dev/null &
  berthd_pid=$!
  for _ in $(seq 200); do
    "$berth_bin" --address "$berth_socket" version >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "berthd did not come up; its log:" >&2
  tail -20 "$bench_dir/berthd.log" >&2
  exit 1
}

# The single-core decompression rate of this archive's gzip layers (the bound on any unpack that
# does not split a layer's stream): all gzip blobs through one `gzip -dc`.
gunzip_dir=$bench_dir/gunzip
mkdir -p "$gunzip_dir"
tar -xf "$archive" -C "$gunzip_dir"
gzip_blobs=()
for blob in "$gunzip_dir"/blobs/sha256/*; do
  [[ $(head -c2 "$blob" | od -An -tx1 | tr -d ' \n') == 1f8b ]] && gzip_blobs+=("$blob")
done
gz_bytes=$(cat "${gzip_blobs[@]}" | wc -c)
start=$(now_ns)
cat "${gzip_blobs[@]}" | gzip -dc >/dev/null
gunzip_ms=$(ms_since "$start")
rm -rf "$gunzip_dir"

archive_bytes=$(stat -c %s "$archive")
berth_times=() ctr_times=() hwm_kib=()
printf '%-6s %10s %10s %12s\n' round berth_ms ctr_ms berthd_hwm
for round in $(seq "$rounds"); do
  start_berthd
  # The previous round's writes and deletions are flushed first, so they are not timed here.
  sync
  start=$(now_ns)
  "$berth_bin" --address "$berth_socket" image import "$archive" --name bench/image >/dev/null
  berth_ms=$(ms_since "$start")
  hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$berthd_pid/status")
  stop_berthd

  peer_dir=$bench_dir/peer-$round
  # `start` waits until containerd answers (and imports busybox, before the clock starts)
  PEER_CONTAINERD_DIR=$peer_dir bash "$peer" start >/dev/null
  sync
  start=$(now_ns)
  ctr --address "$peer_dir/containerd.sock" images import --base-name bench/image "$archive" >/dev/null
  ctr_ms=$(ms_since "$start")
  stop_peer

  berth_times+=("$berth_ms") ctr_times+=("$ctr_ms") hwm_kib+=("$hwm")
  printf '%-6s %10s %10s %9s KiB\n' "$round" "$berth_ms" "$ctr_ms" "$hwm"
done

berth_median=$(printf '%s\n' "${berth_times[@]}" | median)
ctr_median=$(printf '%s\n' "${ctr_times[@]}" | median)
hwm_max=$(printf '%s\n' "${hwm_kib[@]}" | sort -n | tail -1)
echo
echo "archive: $archive ($((archive_bytes / 1000000)) MB)"
echo "berth image import (import + unpack), median: $berth_median ms"
echo "ctr images import (import + unpack), median:  $ctr_median ms"
awk -v b="$berth_median" -v c="$ctr_median" 'BEGIN { printf "berth / ctr: %.2fx\n", b / c }'
awk -v bytes="$archive_bytes" -v ms="$berth_median" 'BEGIN { printf "berth: %.0f MB/s of archive\n", bytes / 1e6 / (ms / 1000) }'
awk -v bytes="$gz_bytes" -v ms="$gunzip_ms" \
  'BEGIN { printf "this machine, one core: gzip -dc of the layers %.0f MB/s (%d MB compressed in %d ms)\n", bytes / 1e6 / (ms / 1000), bytes / 1e6, ms }'
echo "berthd peak RSS (VmHWM, whole process life) during the import: at most $((hwm_max / 1024)) MiB"
