#!/usr/bin/env bash
# bench-metrics.sh — what one Prometheus scrape of berthd costs with N running containers, next
# to Debian's containerd (its [metrics] endpoint, /v1/metrics, with the same N busybox sleeps
# run through ctr), and the machine's floor: one `cat` of every cgroup file berthd reads.
#
# usage: scripts/bench-metrics.sh [N_CONTAINERS] [N_SCRAPES]   (default 100 containers, 30 scrapes)
#
# It builds the release binaries (or takes them from BERTH_BIN_DIR), starts a berthd on a temporary root with --metrics-address on a
# free loopback port, runs N `busybox sleep` containers, then times N_SCRAPES sequential scrapes
# with curl (hyperfine, wall clock from curl's start to its exit, after 3 warm-up scrapes) and
# reads berthd's CPU time (its threads' schedstat) before and after them: CPU per scrape, the
# warm-up scrapes included in both the time and the count. The same for the
# peer containerd (scripts/peer-containerd.sh, its own directory). Prints medians, p90, CPU per
# scrape, the series each exposition held, and the floor. Needs root, runc, containerd, ctr,
# hyperfine, curl and jq. Everything it starts is stopped and removed on exit.
set -euo pipefail

n_containers=${1:-100}
n_scrapes=${2:-30}
[[ $n_containers =~ ^[1-9][0-9]*$ && $n_scrapes =~ ^[1-9][0-9]*$ ]] \
  || { echo "N_CONTAINERS and N_SCRAPES must be positive numbers" >&2; exit 2; }
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
peer=$repo_dir/scripts/peer-containerd.sh
[[ $(id -u) -eq 0 ]] || { echo "run this as root: it runs containers" >&2; exit 1; }
for tool in hyperfine curl jq runc; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y $tool" >&2; exit 1; }
done
[[ -s $images_dir/busybox-oci.tar ]] || bash scripts/build-test-images.sh busybox >&2

bin_dir=${BERTH_BIN_DIR:-}
if [[ -z $bin_dir ]]; then
  echo "building release binaries" >&2
  CARGO_INCREMENTAL=0 cargo build --release --bins -p berth-runtime --quiet
  bin_dir=$repo_dir/target/release
fi
berthd_bin=$bin_dir/berthd
berth_bin=$bin_dir/berth

bench_dir=$(mktemp -d /var/tmp/berth-bench-metrics.XXXXXX)
bench_name=$(basename "$bench_dir")
berth_socket=$bench_dir/berthd.sock
export PEER_CONTAINERD_DIR=$bench_dir/peer
berthd_pid=
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
berth_port=$(free_port)
peer_port=$(free_port)
export PEER_CONTAINERD_METRICS=127.0.0.1:$peer_port
berth() { "$berth_bin" --address "$berth_socket" "$@"; }

cleanup() {
  set +e
  trap - EXIT INT TERM
  echo "cleaning up" >&2
  if [[ -n $berthd_pid ]] && kill -0 "$berthd_pid" 2>/dev/null; then
    mapfile -t ids < <(berth ps -a --output json 2>/dev/null | jq -r '.[].id' 2>/dev/null)
    ((${#ids[@]})) && berth rm -f "${ids[@]}" >/dev/null 2>&1
    kill "$berthd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$berthd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$berthd_pid" 2>/dev/null
  fi
  bash "$peer" stop >/dev/null 2>&1
  awk -v prefix="$bench_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r \
    | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$bench_dir"
  # berthd leaves the cgroup parent and namespace directories it made; they are empty by now.
  for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [[ -d $hierarchy/$bench_name ]] && find "$hierarchy/$bench_name" -depth -type d -exec rmdir {} + 2>/dev/null
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# cpu_ns PID: CPU time of PID's threads so far, in ns (schedstat's first field; finer than the
# clock ticks of /proc/PID/stat. A thread that ends meanwhile takes its time with it: tokio's
# blocking threads, which collect scrapes, stay 10 s idle before they end). `%.0f`, not `%d`: mawk's
# `%d` stops at 2^31, 2.1 s of CPU, which a containerd with 100 tasks has long passed.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $1 } END { printf "%.0f\n", n }'; }

# measure NAME PID URL: hyperfine over N_SCRAPES curls of URL, and PID's CPU time over them.
# Prints "median_ms p90_ms cpu_ms_per_scrape series".
measure() {
  local name=$1 pid=$2 url=$3 before after
  curl -sf -o "$bench_dir/$name.txt" "$url"
  before=$(cpu_ns "$pid")
  hyperfine -N --style none --warmup 3 --runs "$n_scrapes" --export-json "$bench_dir/$name.json" \
    -- "curl -sf -o /dev/null $url" >/dev/null
  after=$(cpu_ns "$pid")
  jq -r --argjson cpu_ns "$((after - before))" --argjson n "$((n_scrapes + 3))" \
    --argjson series "$(grep -vc '^#' "$bench_dir/$name.txt")" \
    '.results[0].times | sort as $t | ($t | length) as $k
     | [$t[($k / 2 | floor)] * 1000, $t[(($k * 0.9) | ceil) - 1] * 1000, $cpu_ns / 1e6 / $n, $series]
     | @tsv' "$bench_dir/$name.json" | awk '{ printf "%.1f %.1f %.2f %d\n", $1, $2, $3, $4 }'
}

# ---- berth ------------------------------------------------------------------------------------
setsid "$berthd_bin" --root "$bench_dir/root" --state "$bench_dir/state" --address "$berth_socket" \
  --cgroup-parent "/$bench_name" --metrics-address ":$berth_port" >>"$bench_dir/berthd.log" 2>&1 </dev/null &
berthd_pid=$!
for _ in $(seq 500); do berth version >/dev/null 2>&1 && break; sleep 0.02; done
berth image import "$images_dir/busybox-oci.tar" --name busybox >/dev/null
echo "running $n_containers containers on berth" >&2
seq "$n_containers" | xargs -P 4 -I{} "$berth_bin" --address "$berth_socket" run -d --name "m{}" busybox sleep 100000 >/dev/null
n_running=$(berth ps --output json | jq '[.[] | select(.task.status == "running")] | length')
[[ $n_running -eq $n_containers ]] || { echo "only $n_running of $n_containers berth containers run" >&2; exit 1; }
read -r berth_median berth_p90 berth_cpu berth_series < <(measure berth "$berthd_pid" "http://127.0.0.1:$berth_port/metrics")
# The floor: the cgroup files berthd reads for these containers, read by one cat.
mapfile -t cgroup_files < <(for id in $(seq "$n_containers"); do
  relative=$bench_name/default/m$id
  for file in cpuacct/$relative/cpuacct.usage memory/$relative/memory.usage_in_bytes memory/$relative/memory.limit_in_bytes \
    pids/$relative/pids.current blkio/$relative/blkio.throttle.io_service_bytes; do
    [[ -e /sys/fs/cgroup/$file ]] && echo "/sys/fs/cgroup/$file"
  done
done)
if ((${#cgroup_files[@]} == 0)); then  # cgroup v2: the unified names
  mapfile -t cgroup_files < <(for id in $(seq "$n_containers"); do
    for file in cpu.stat memory.current memory.max pids.current io.stat; do
      echo "/sys/fs/cgroup/$bench_name/default/m$id/$file"
    done
  done)
fi
printf '%s\n' "${cgroup_files[@]}" >"$bench_dir/cgroup-files"
hyperfine -N --style none --warmup 3 --runs "$n_scrapes" --export-json "$bench_dir/floor.json" \
  -- "xargs -a $bench_dir/cgroup-files cat" >/dev/null
floor_median=$(jq -r '.results[0].median * 1000' "$bench_dir/floor.json" | awk '{ printf "%.1f", $1 }')
berth rm -f $(seq -f 'm%g' "$n_containers") >/dev/null

# ---- containerd -------------------------------------------------------------------------------
bash "$peer" start >&2
peer_pid=$(bash "$peer" pid)
echo "running $n_containers containers on containerd" >&2
seq "$n_containers" | xargs -P 4 -I{} bash "$peer" ctr run -d local/busybox:latest "m{}" sleep 100000 >/dev/null
n_peer=$(bash "$peer" ctr tasks ls | awk '$3 == "RUNNING" { n++ } END { print n + 0 }')
[[ $n_peer -eq $n_containers ]] || { echo "only $n_peer of $n_containers containerd tasks run" >&2; exit 1; }
read -r peer_median peer_p90 peer_cpu peer_series < <(measure containerd "$peer_pid" "http://127.0.0.1:$peer_port/v1/metrics")

git_revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo '+uncommitted changes')"
echo
echo "berth metrics scrape benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), berth $git_revision"
echo "machine: $(nproc) cores, kernel $(uname -r), load average at start of report $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peer: $(containerd --version | awk '{ print "containerd", $3 }') /v1/metrics; command: scripts/bench-metrics.sh $n_containers $n_scrapes"
echo
printf '%-34s %12s %10s %16s %8s\n' "$n_containers running containers" "median ms" "p90 ms" "daemon CPU ms" "series"
printf '%-34s %12s %10s %16s %8s\n' "berthd /metrics" "$berth_median" "$berth_p90" "$berth_cpu" "$berth_series"
printf '%-34s %12s %10s %16s %8s\n' "containerd /v1/metrics" "$peer_median" "$peer_p90" "$peer_cpu" "$peer_series"
printf '%-34s %12s\n' "floor: one cat of ${#cgroup_files[@]} cgroup files" "$floor_median"
