#!/usr/bin/env bash
# Disk a fresh daemon takes: starts berthd on an empty root (built binaries from target/debug,
# or BERTH_BIN_DIR), waits until it answers, stops it and prints the allocated bytes of its root
# and of its log; then the same for containerd (scripts/peer-containerd.sh start, on a directory
# of its own) and the file system's free space for scale. Everything runs in a temporary
# directory under /var/tmp (or DIR) that is removed at the end.
# Usage: scripts/bench-fresh-disk.sh [DIR]
set -euo pipefail
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=${BERTH_BIN_DIR:-$repo_dir/target/debug}
base=${1:-/var/tmp}
work=$(mktemp -d "$base/berth-fresh-disk.XXXXXX")
berthd_pid=""
cleanup() {
  [[ -n $berthd_pid ]] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null || true
  PEER_CONTAINERD_DIR=$work/peer "$repo_dir/scripts/peer-containerd.sh" stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [[ ! -x $bin_dir/berthd || ! -x $bin_dir/berth ]]; then
  (cd "$repo_dir" && CARGO_INCREMENTAL=0 cargo build --workspace --bins)
fi

allocated() { du -s --block-size=1 "$1" | cut -f1; }

"$bin_dir/berthd" --root "$work/root" --state "$work/state" --address "$work/berthd.sock" \
  --cgroup-parent "/$(basename "$work")" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
for _ in $(seq 1 300); do
  "$bin_dir/berth" --address "$work/berthd.sock" version >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin_dir/berth" --address "$work/berthd.sock" version >/dev/null || { cat "$work/berthd.log"; exit 1; }
kill "$berthd_pid" && wait "$berthd_pid" || true
berthd_pid=""
echo "berthd, fresh root:      $(allocated "$work/root") bytes allocated (log: $(allocated "$work/root/log") bytes)"
ls -l "$work/root/log" | sed 's/^/  /'

peer() { PEER_CONTAINERD_DIR=$work/peer "$repo_dir/scripts/peer-containerd.sh" "$@"; }
# `start` also imports busybox (the peer script's only way to make its config), so the content
# store is left out of containerd's figure; its metadata database is the log's counterpart.
if peer start >/dev/null 2>&1; then
  peer_root=$work/peer/root
  content=$(allocated "$peer_root/io.containerd.content.v1.content" 2>/dev/null || echo 0)
  snapshots=$(allocated "$peer_root/io.containerd.snapshotter.v1.overlayfs" 2>/dev/null || echo 0)
  echo "containerd, fresh root:  $(($(allocated "$peer_root") - content - snapshots)) bytes allocated without the imported busybox (metadata db: $(allocated "$peer_root/io.containerd.metadata.v1.bolt" 2>/dev/null || echo 0) bytes)"
  peer stop >/dev/null 2>&1 || true
else
  echo "containerd: not available (scripts/peer-containerd.sh launch failed)"
fi
echo "file system free:        $(df --output=avail -B1 "$base" | tail -1 | tr -d ' ') bytes"
