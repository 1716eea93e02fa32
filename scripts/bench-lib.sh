# bench-lib.sh — what the issue-9 benchmarks (bench-exec.sh, bench-echo.sh, bench-footprint.sh)
# share: root and tools checked, release binaries built, one berthd on a temporary directory under
# /var/tmp, the peer containerd (scripts/peer-containerd.sh), and everything stopped, unmounted and
# removed on exit, even on failure or Ctrl-C. Sourced, not run; the caller sets `bench_name` first
# and may define `bench_cleanup` for its own leftovers.

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench-helpers.sh
source "$repo_dir/scripts/bench-helpers.sh"
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
peer=$repo_dir/scripts/peer-containerd.sh

if [[ $(id -u) -ne 0 ]]; then
  echo "run this as root: containers need namespaces, mounts and cgroups" >&2
  exit 1
fi

release_bin_dir
berthd_bin=$bin_dir/berthd
berth_bin=$bin_dir/berth
runc_bin=$(command -v runc || true)

[[ -s $images_dir/busybox-oci.tar ]] || bash scripts/build-test-images.sh busybox >&2

bench_dir=$(mktemp -d "/var/tmp/berth-bench-$bench_name.XXXXXX")
# Our own peer containerd, so a benchmark running beside another on this machine shares nothing
# with it; names of containers carry the run's suffix, since cgroups are global.
export PEER_CONTAINERD_DIR=${PEER_CONTAINERD_DIR:-$bench_dir/peer}
run_suffix=$$
berth_socket=$bench_dir/berthd.sock
berthd_pid=
peer_started=

cleanup() {
  set +e
  trap - EXIT INT TERM
  echo "cleaning up" >&2
  declare -F bench_cleanup >/dev/null && bench_cleanup
  stop_berthd_and_its_containers
  [[ -n $peer_started ]] && bash "$peer" stop
  for pid in $(pids_naming_bench_dir); do kill -9 "$pid" 2>/dev/null; done
  awk -v prefix="$bench_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$bench_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_volatile_state

# start_berthd_with_busybox: berthd on the temporary directory, answering, with busybox imported.
start_berthd_with_busybox() {
  setsid "$berthd_bin" --root "$bench_dir/root" --state "$volatile_dir/berth" --address "$berth_socket" \
    --runc "$runc_bin" >>"$bench_dir/berthd.log" 2>&1 </dev/null &
  berthd_pid=$!
  local _
  for _ in $(seq 500); do berth version >/dev/null 2>&1 && break; sleep 0.02; done
  berth version >/dev/null 2>&1 || { echo "berthd did not answer; log: $bench_dir/berthd.log" >&2; cat "$bench_dir/berthd.log" >&2; exit 1; }
  berth image import "$images_dir/busybox-oci.tar" --name busybox >/dev/null
}

# start_peer: the peer containerd, busybox imported as local/busybox:latest; sets peer_socket.
start_peer() {
  peer_started=1
  bash "$peer" start >&2
  peer_socket=$(bash "$peer" address)
}

# make_runc_bundle DIR ARGS_JSON TERMINAL: the busybox layer unpacked into DIR/rootfs and runc's
# default spec running ARGS_JSON (a JSON array), with process.terminal set to TERMINAL.
make_runc_bundle() {
  local bundle_dir=$1 args_json=$2 terminal=$3 manifest_digest layer_digest
  mkdir -p "$bench_dir/oci" "$bundle_dir/rootfs"
  [[ -s $bench_dir/oci/index.json ]] || tar -xf "$images_dir/busybox-oci.tar" -C "$bench_dir/oci"
  manifest_digest=$(jq -r '.manifests[0].digest' "$bench_dir/oci/index.json")
  for layer_digest in $(jq -r '.layers[].digest' "$bench_dir/oci/blobs/sha256/${manifest_digest#sha256:}"); do
    tar -xf "$bench_dir/oci/blobs/sha256/${layer_digest#sha256:}" -C "$bundle_dir/rootfs"
  done
  (cd "$bundle_dir" && "$runc_bin" spec)
  jq --argjson args "$args_json" --argjson terminal "$terminal" '.process.terminal = $terminal | .process.args = $args' \
    "$bundle_dir/config.json" >"$bundle_dir/config.json.new"
  mv "$bundle_dir/config.json.new" "$bundle_dir/config.json"
}

# print_header COMMAND: when, what and on which machine, for BENCHMARKS.md.
print_header() {
  local git_revision
  git_revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo '+uncommitted changes')"
  echo
  echo "berth $bench_name benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), berth $git_revision"
  echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "peers: $(containerd --version | awk '{ print "containerd", $3 }'), $("$runc_bin" --version | head -1)"
  echo "command: $1 (binaries: $bin_dir)"
}

