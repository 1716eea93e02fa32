#!/usr/bin/env bash
# berth's main job on a fresh Debian 12 machine, as root: install what it needs, build berth,
# start berthd, import a busybox image built from Debian's busybox-static, run a real
# container, and print that container's history as the log recorded it.
#   bash scripts/demo.sh
# berthd keeps running afterwards (root /var/lib/berth, socket /run/berth/berthd.sock);
# `kill $(cat /run/berth/berthd.pid)` stops it, and the containers it ran stay accounted for.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
bash scripts/build-test-images.sh busybox
images=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
echo "== building berth (release)"
cargo build --release --bins --locked -q
bin=$PWD/target/release
export BERTH_ADDRESS=/run/berth/berthd.sock

if ! "$bin/berth" version >/dev/null 2>&1; then
  echo "== starting berthd (log: /var/log/berthd.log)"
  mkdir -p /run/berth
  setsid "$bin/berthd" >>/var/log/berthd.log 2>&1 </dev/null &
  echo $! >/run/berth/berthd.pid
  for _ in $(seq 100); do "$bin/berth" version >/dev/null 2>&1 && break; sleep 0.1; done
fi
"$bin/berth" version

echo "== importing busybox"
"$bin/berth" image import "$images/busybox-oci.tar" --name busybox
name=demo-$(date +%s)
echo "== running container $name"
set +e
"$bin/berth" run --name "$name" --env GREETING="hello from berth" busybox \
  sh -c 'echo "$GREETING"; echo "running as $(id -u) in $(pwd) on $(hostname)"; exit 3'
code=$?
set -e
echo "== the container exited with code $code"
echo "== its history, read back from the log by berth-replay"
"$bin/berth-replay" history --root /var/lib/berth --container "$name"
echo "== the log's integrity"
"$bin/berth-replay" verify --root /var/lib/berth
"$bin/berth" rm "$name" >/dev/null
