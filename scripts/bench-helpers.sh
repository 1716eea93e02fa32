# bench-helpers.sh — functions every benchmark script shares (bench-lifecycle.sh, bench-network.sh
# and, through bench-lib.sh, bench-exec.sh, bench-echo.sh and bench-footprint.sh). Sourced, not run; they read
# the caller's variables when called: bench_dir, berth_bin, berth_socket, peer_socket,
# runs_per_round.

# require_tools COMMAND:PACKAGE...: installs with apt-get the packages of commands that are missing.
require_tools() {
  local tool missing_packages=()
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null || missing_packages+=("${tool#*:}")
  done
  if ((${#missing_packages[@]})); then
    echo "installing ${missing_packages[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_packages[@]}" >/dev/null
  fi
}

# release_bin_dir: sets bin_dir to $BERTH_BIN_DIR when given (binaries built elsewhere, say a
# "before" build to compare), else builds the release binaries and uses target/release.
release_bin_dir() {
  bin_dir=${BERTH_BIN_DIR:-}
  if [[ -z $bin_dir ]]; then
    echo "building release binaries" >&2
    cargo build --release --bins -p berth-runtime --quiet
    bin_dir=$repo_dir/target/release
  fi
}

berth() { "$berth_bin" --address "$berth_socket" "$@"; }
peer_ctr() { ctr --address "$peer_socket" "$@"; }

# mount_volatile_state: a tmpfs at $bench_dir/run for each runtime's volatile state — berthd's
# --state, containerd's state, bare runc's --root — as on a Debian host, where /run is a tmpfs and
# berthd (/run/berth), containerd (/run/containerd) and runc (/run/runc) keep it by default. Sets
# volatile_dir and PEER_CONTAINERD_STATE; the caller's clean-up unmounts it with the rest of
# $bench_dir. Persistent state (berth's root, containerd's root) stays under $bench_dir.
mount_volatile_state() {
  volatile_dir=$bench_dir/run
  mkdir -m 0700 -p "$volatile_dir"
  mount -t tmpfs -o mode=0700,size=2g berth-bench-run "$volatile_dir"
  export PEER_CONTAINERD_STATE=$volatile_dir/containerd
}

# pids_naming_bench_dir: processes whose command line names our temporary directory (berth-monitors).
pids_naming_bench_dir() {
  local cmdline_file pid
  for cmdline_file in /proc/[0-9]*/cmdline; do
    pid=${cmdline_file#/proc/}; pid=${pid%/cmdline}
    [[ $pid == "$$" ]] && continue
    tr '\0' ' ' 2>/dev/null <"$cmdline_file" | grep -qF -- "$bench_dir/" && echo "$pid"
  done
  return 0
}

# stop_berthd_and_its_containers: removes every container berthd $berthd_pid knows, then stops it
# (SIGTERM, SIGKILL after 5 s).
stop_berthd_and_its_containers() {
  local leftover_ids _
  if [[ -n $berthd_pid ]] && kill -0 "$berthd_pid" 2>/dev/null; then
    mapfile -t leftover_ids < <(berth ps -a --output json 2>/dev/null | jq -r '.[].id' 2>/dev/null)
    ((${#leftover_ids[@]})) && berth rm -f "${leftover_ids[@]}" >/dev/null 2>&1
    kill "$berthd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$berthd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$berthd_pid" 2>/dev/null
  fi
}

# hyperfine_round NAME ROUND COMMAND: one round of $runs_per_round runs of COMMAND (no shell in between).
hyperfine_round() {
  local name=$1 round=$2 command=$3
  hyperfine -N --style none --warmup 3 --runs "$runs_per_round" --export-json "$bench_dir/$name.$round.json" \
    -- "$command" >/dev/null
}

# pooled_ms NAME: "mean median p90" in ms over the runs of every round of NAME.
pooled_ms() {
  jq -s -r '[.[].results[0].times[]] | sort as $t | ($t | length) as $n
    | [($t | add / $n), (if $n % 2 == 1 then $t[($n - 1) / 2] else ($t[$n / 2 - 1] + $t[$n / 2]) / 2 end),
       $t[(($n * 0.9) | ceil) - 1]] | map(. * 1000) | @tsv' "$bench_dir/$1".*.json \
    | awk '{ printf "%.1f %.1f %.1f\n", $1, $2, $3 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# verdict WHAT RATIO GOAL: one line saying whether RATIO ≤ GOAL and by how much it misses.
verdict() {
  awk -v what="$1" -v r="$2" -v goal="$3" 'BEGIN {
    if (r <= goal) printf "  goal %s ≤ %.2f×: %.2f× — met\n", what, goal, r
    else printf "  goal %s ≤ %.2f×: %.2f× — MISSED, %.0f%% over the goal\n", what, goal, r, (r / goal - 1) * 100
  }'
}
