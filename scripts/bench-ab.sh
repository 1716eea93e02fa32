#!/usr/bin/env bash
# bench-ab.sh — one berth command timed against two builds of berth at once, so that a change is
# judged in the same minutes as what it changes: two berthds run side by side (roots under
# /var/tmp, state on one tmpfs), and the command alternates between them in rounds of 5 calls,
# the order flipped every round. Prints the mean and median per build and their ratio.
#
# usage: scripts/bench-ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR ROUNDS BERTH_ARGS...
#   e.g. scripts/bench-ab.sh /var/tmp/before target/release 12 run --rm --network none busybox /bin/true
#        SETUP="run -d --name sl --network none busybox sleep 100000" \
#          scripts/bench-ab.sh /var/tmp/before target/release 12 exec sl true
# SETUP: berth arguments run once on each daemon after busybox is imported.
# Needs root and the test images (scripts/build-test-images.sh busybox). Everything it starts is
# stopped, unmounted and removed on exit.
set -euo pipefail

if (($# < 4)); then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
[[ $(id -u) -eq 0 ]] || { echo "run this as root: containers need namespaces, mounts and cgroups" >&2; exit 1; }
before_dir=$(cd "$1" && pwd)
after_dir=$(cd "$2" && pwd)
rounds=$3
shift 3
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
[[ -s $images_dir/busybox-oci.tar ]] || { echo "no $images_dir/busybox-oci.tar: run scripts/build-test-images.sh busybox" >&2; exit 1; }

work_dir=$(mktemp -d /var/tmp/berth-bench-ab.XXXXXX)
cleanup() {
  set +e
  for name in before after; do
    local bin_dir=$before_dir
    [[ $name == after ]] && bin_dir=$after_dir
    if [[ -f $work_dir/$name.pid ]]; then
      mapfile -t ids < <("$bin_dir/berth" --address "$work_dir/$name.sock" ps -a -q 2>/dev/null)
      ((${#ids[@]})) && "$bin_dir/berth" --address "$work_dir/$name.sock" rm -f "${ids[@]}" >/dev/null 2>&1
      kill "$(cat "$work_dir/$name.pid")" 2>/dev/null
    fi
  done
  sleep 1
  awk -v prefix="$work_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -m 0700 "$work_dir/run"
mount -t tmpfs -o mode=0700 berth-bench-ab "$work_dir/run"

# start_daemon NAME BIN_DIR: a berthd answering on $work_dir/NAME.sock with busybox imported.
start_daemon() {
  local name=$1 bin_dir=$2 _
  setsid "$bin_dir/berthd" --root "$work_dir/$name" --state "$work_dir/run/$name" --address "$work_dir/$name.sock" \
    --runc "$(command -v runc)" >>"$work_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$work_dir/$name.pid"
  for _ in $(seq 200); do "$bin_dir/berth" --address "$work_dir/$name.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  "$bin_dir/berth" --address "$work_dir/$name.sock" image import "$images_dir/busybox-oci.tar" --name busybox >/dev/null
  if [[ -n ${SETUP:-} ]]; then
    # shellcheck disable=SC2086 # SETUP is berth's arguments, split as a shell would
    "$bin_dir/berth" --address "$work_dir/$name.sock" $SETUP >/dev/null
  fi
}
start_daemon before "$before_dir"
start_daemon after "$after_dir"

python3 - "$before_dir" "$after_dir" "$work_dir" "$rounds" "$@" <<'PYTHON'
import statistics, subprocess, sys, time

before_dir, after_dir, work_dir, rounds = sys.argv[1:5]
args = sys.argv[5:]
builds = {"before": before_dir, "after": after_dir}
times = {"before": [], "after": []}
for round_index in range(int(rounds)):
    order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
    for name in order:
        command = [f"{builds[name]}/berth", "--address", f"{work_dir}/{name}.sock"] + args
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[name].append((time.perf_counter() - started) * 1000)
print(f"berth {' '.join(args)}: {rounds} rounds of 5 calls per build, alternating")
for name in ("before", "after"):
    print(f"  {name:6} {builds[name]}: mean {statistics.mean(times[name]):.1f} ms, "
          f"median {statistics.median(times[name]):.1f} ms, n={len(times[name])}")
print(f"  after/before (mean): {statistics.mean(times['after']) / statistics.mean(times['before']):.3f}")
PYTHON
