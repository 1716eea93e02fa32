#!/usr/bin/env bash
# peer-containerd.sh — Debian's containerd as the yardstick for berth's benchmarks. It runs from a
# directory of its own (root, state, socket, config, log) so a system containerd is never touched.
#
#   scripts/peer-containerd.sh start        install containerd (apt-get) if missing, start it, wait until
#                                           it answers, import busybox as local/busybox:latest
#   scripts/peer-containerd.sh launch       start the daemon only and return at once (for timing restarts)
#   scripts/peer-containerd.sh ctr ARGS...  run ctr against it
#   scripts/peer-containerd.sh address      print its socket
#   scripts/peer-containerd.sh pid          print the daemon's pid
#   scripts/peer-containerd.sh stop         remove its tasks and containers, stop it, unmount, delete its directory
#
# Environment: PEER_CONTAINERD_DIR (default /var/tmp/berth-peer-containerd),
#              PEER_CONTAINERD_STATE (its state directory; default PEER_CONTAINERD_DIR/state),
#              PEER_CONTAINERD_METRICS (HOST:PORT: serve containerd's Prometheus metrics there; unset: off),
#              BERTH_TESTIMAGES (default /var/tmp/berth-testimages; busybox-oci.tar is built when absent).
# The CRI plugin is disabled: ctr does not use it, and it would only add start-up work to the restart test.
set -euo pipefail

repo_dir=$(cd "$(dirname "$0")/.." && pwd)
peer_dir=${PEER_CONTAINERD_DIR:-/var/tmp/berth-peer-containerd}
state_dir=${PEER_CONTAINERD_STATE:-$peer_dir/state}
socket=$peer_dir/containerd.sock
config=$peer_dir/config.toml
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
readonly image_ref=local/busybox:latest

peer_ctr() { ctr --address "$socket" "$@"; }

# ctr waits 10 s for a socket that does not answer unless told otherwise
answering() { [[ -S $socket ]] && peer_ctr --connect-timeout 100ms version >/dev/null 2>&1; }

install_if_missing() {
  command -v containerd >/dev/null && command -v ctr >/dev/null && command -v runc >/dev/null \
    && command -v containerd-shim-runc-v2 >/dev/null && return 0
  echo "installing containerd and runc with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc >/dev/null
}

write_config() {
  mkdir -p "$peer_dir"
  cat >"$config" <<EOF
version = 2
root = "$peer_dir/root"
state = "$state_dir"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$socket"

[plugins."io.containerd.internal.v1.opt"]
  path = "$peer_dir/opt"
EOF
  if [[ -n ${PEER_CONTAINERD_METRICS:-} ]]; then
    printf '\n[metrics]\n  address = "%s"\n' "$PEER_CONTAINERD_METRICS" >>"$config"
  fi
}

# launch_daemon: containerd in a session of its own, so signals meant for the caller miss it.
launch_daemon() {
  setsid containerd --config "$config" >>"$peer_dir/containerd.log" 2>&1 </dev/null &
  echo $! >"$peer_dir/containerd.pid"
}

# pids_using_peer_dir: processes whose command line names our directory (containerd, its shims).
pids_using_peer_dir() {
  local cmdline_file pid
  for cmdline_file in /proc/[0-9]*/cmdline; do
    pid=${cmdline_file#/proc/}; pid=${pid%/cmdline}
    [[ $pid == "$$" ]] && continue
    tr '\0' ' ' 2>/dev/null <"$cmdline_file" | grep -qF -- "$peer_dir/" && echo "$pid"
  done
  return 0
}

case ${1:-} in
  start)
    install_if_missing
    [[ -s $images_dir/busybox-oci.tar ]] || bash "$repo_dir/scripts/build-test-images.sh" busybox >&2
    if ! answering; then
      write_config
      launch_daemon
      for _ in $(seq 300); do answering && break; sleep 0.02; done
      answering || { echo "containerd did not answer within 6 s; see $peer_dir/containerd.log" >&2; exit 1; }
    fi
    if ! peer_ctr images ls -q | grep -qxF "$image_ref"; then
      peer_ctr images import --base-name local/busybox "$images_dir/busybox-oci.tar" >/dev/null
      # the archive's ref.name decides the tag; make sure the name the benchmarks use exists
      peer_ctr images ls -q | grep -qxF "$image_ref" || {
        echo "import did not create $image_ref; images present: $(peer_ctr images ls -q | tr '\n' ' ')" >&2
        exit 1
      }
    fi
    echo "containerd $(containerd --version | awk '{print $3}') answering at $socket"
    ;;
  launch)
    [[ -f $config ]] || { echo "no config at $config; run '$0 start' first" >&2; exit 1; }
    launch_daemon
    ;;
  ctr) shift; peer_ctr "$@" ;;
  address) echo "$socket" ;;
  pid) cat "$peer_dir/containerd.pid" ;;
  stop)
    if answering; then
      mapfile -t task_ids < <(peer_ctr tasks ls -q 2>/dev/null)
      ((${#task_ids[@]})) && peer_ctr tasks delete --force "${task_ids[@]}" >/dev/null 2>&1 || true
      mapfile -t container_ids < <(peer_ctr containers ls -q 2>/dev/null)
      ((${#container_ids[@]})) && peer_ctr containers delete "${container_ids[@]}" >/dev/null 2>&1 || true
    fi
    if [[ -f $peer_dir/containerd.pid ]]; then
      daemon_pid=$(cat "$peer_dir/containerd.pid")
      kill "$daemon_pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$daemon_pid" 2>/dev/null || true
    fi
    # shims (and their containers) left behind by a crash of this script: end them by pid
    for pid in $(pids_using_peer_dir); do kill -9 "$pid" 2>/dev/null || true; done
    for dir in "$peer_dir" "$state_dir"; do
      awk -v prefix="$dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r \
        | xargs -r -n1 umount -l 2>/dev/null || true
    done
    rm -rf "$peer_dir" "$state_dir"
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
