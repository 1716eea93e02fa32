#!/usr/bin/env bash
# Regenerates tests/fixtures/log-v1-schema2/: the log of a real berthd (today's format, event
# schema 2) driven through every kind of event berth records but three (see the fixture's README) — namespaces, image import, re-import
# under the same name, tag, pull from and push to a real registry, volumes, containers created,
# run to an exit code, exec'd into, paused and resumed, updated, stopped, restarted by their
# policy, failed to start, removed (with --rm too), images removed and pruned, an orphaned runc
# container removed by recovery after a restart — then stopped
# cleanly with no task left running. Segments are 64 KiB so the fixture stays small.
# tests/tests/fixture_log.rs replays it with the current binaries: that test is the contract
# that later schema changes keep reading this log. Regenerate only on purpose (a new fixture
# beside this one is the usual way), and update the expectations in that test.
#
# Needs root, runc, the test images (scripts/build-test-images.sh), docker-registry and skopeo
# (scripts/install-deps.sh). Usage: scripts/make-fixture-log.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-tests/fixtures/log-v1-schema2}
images=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
CARGO_INCREMENTAL=0 cargo build --bins -q
bin=$PWD/target/debug
work=$(mktemp -d /var/tmp/berth-fixture-XXXXXX)
registry_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
berthd_pid=""
cleanup() {
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
  bash scripts/registry.sh stop "$work/registry" >/dev/null 2>&1 || true
  for runc_root in "$work"/state/runc/*; do
    [ -d "$runc_root" ] || continue
    for id in $(runc --root "$runc_root" list -q 2>/dev/null); do runc --root "$runc_root" delete -f "$id" || true; done
  done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
  find /sys/fs/cgroup -depth -type d -path "*/$(basename "$work")*" -exec rmdir {} + 2>/dev/null || true
}
trap cleanup EXIT

cat >"$work/berthd.toml" <<TOML
[log]
segment_size = 65536
TOML
"$bin/berthd" --root "$work/root" --state "$work/state" --address "$work/berthd.sock" \
  --cgroup-parent "/$(basename "$work")" --config "$work/berthd.toml" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
berth() { "$bin/berth" --address "$work/berthd.sock" "$@"; }
for _ in $(seq 300); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
berth version >/dev/null

# A registry to pull from and push to.
bash scripts/registry.sh start "$work/registry" "$registry_port" >/dev/null
bash scripts/registry.sh push "$work/registry" "$registry_port" "$images/busybox-oci.tar" fixture/busybox:1 >/dev/null

set -x
berth namespace create forensics --label team=audit
berth namespace create scratch
berth namespace rm scratch
berth image import "$images/busybox-oci.tar" --name busybox
berth image import "$images/layers-oci.tar" --name layered:v1
berth image tag layered:v1 layered:v2
berth image import "$images/busybox-oci.tar" --name layered:v2          # the same name, another manifest
berth image pull "127.0.0.1:$registry_port/fixture/busybox:1"
berth image push busybox "127.0.0.1:$registry_port/fixture/pushed:1"
berth volume create data --label purpose=fixture
berth volume create gone
berth volume rm gone
berth run --name exited3 --env FIXTURE=1 busybox sh -c 'exit 3' || [ $? -eq 3 ]
berth run -d --name sleeper -v data:/data --label role=long busybox sleep 1000
berth exec sleeper sh -c 'echo kept > /data/file; exit 5' || [ $? -eq 5 ]
berth exec sleeper /no/such/binary || true                              # ExecStartFailed
berth pause sleeper
berth resume sleeper
berth update --memory 64m --pids-limit 50 sleeper
berth stop -t 1 sleeper
berth run -d --name restarter --restart on-failure:2 busybox sh -c 'exit 1'
berth create --name created-only --read-only busybox true
berth run --name broken busybox /no/such/binary || true
berth run --name removed busybox true
berth rm removed
berth run -d --rm --name auto busybox true
berth --namespace forensics image import "$images/busybox-oci.tar" --name busybox
berth --namespace forensics run --name elsewhere busybox sh -c 'exit 7' || [ $? -eq 7 ]
berth image rm layered:v2 layered:v1
berth image prune
set +x

# Wait for the restart policy to give up (two restarts) and --rm to remove its container.
for _ in $(seq 300); do
  n_restarts=$("$bin/berth-replay" --root "$work/root" events --kind TaskRestartScheduled | wc -l)
  auto_left=$(berth ps -a --output json | grep -c '"id": "auto"' || true)
  restarter_running=$(berth ps --output json | grep -c '"id": "restarter"' || true)
  [ "$n_restarts" -ge 2 ] && [ "$auto_left" -eq 0 ] && [ "$restarter_running" -eq 0 ] && break
  sleep 0.2
done
[ "$n_restarts" -ge 2 ] || { echo "the restart policy did not restart twice" >&2; exit 1; }
berth ps -a

start_berthd() {
  "$bin/berthd" --root "$work/root" --state "$work/state" --address "$work/berthd.sock" \
    --cgroup-parent "/$(basename "$work")" --config "$work/berthd.toml" >>"$work/berthd.log" 2>&1 &
  berthd_pid=$!
  for _ in $(seq 300); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
  berth version >/dev/null
}
stop_berthd() {
  kill "$berthd_pid"
  wait "$berthd_pid" || true
  berthd_pid=""
}

# An orphan: a runc container in berthd's runc root that no task accounts for, made while berthd
# is down; recovery removes it when berthd starts again (OrphanRemoved, a second DaemonStarted).
stop_berthd
bundle=$work/orphan-bundle
mkdir -p "$bundle"
layer_fs=$(find "$work/root/snapshots/committed" -mindepth 2 -maxdepth 2 -name fs | head -1)
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" "$layer_fs" "/$(basename "$work")/orphan" <<'PY'
import json, sys
path, rootfs, cgroup = sys.argv[1:]
spec = json.load(open(path))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sleep", "1000"]
spec["linux"]["cgroupsPath"] = cgroup
json.dump(spec, open(path, "w"))
PY
runc --root "$work/state/runc/default" run -d --bundle "$bundle" orphan-ghost </dev/null >/dev/null 2>&1
start_berthd
for _ in $(seq 100); do
  "$bin/berth-replay" --root "$work/root" events --kind OrphanRemoved | grep -q orphan-ghost && break
  sleep 0.2
done
"$bin/berth-replay" --root "$work/root" events --kind OrphanRemoved | grep -q orphan-ghost \
  || { echo "recovery did not record the orphan" >&2; exit 1; }
stop_berthd
"$bin/berth-replay" --root "$work/root" verify --strict
rm -rf "$out/log"
mkdir -p "$out"
cp -a "$work/root/log" "$out/log"
chmod 0755 "$out" "$out/log"
chmod 0644 "$out"/log/*
"$bin/berth-replay" --log "$out/log" stats
echo "fixture written to $out ($(du -sh "$out/log" | cut -f1))"
