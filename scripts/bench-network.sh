#!/usr/bin/env bash
# bench-network.sh — what a bridge network adds to running a container, for berth and for Debian's
# containerd with the same CNI plugins and the same plugin list, measured in the same run, beside
# the machine's floor: the plugins alone (ADD then DEL of that list on a bare network namespace).
#
# usage: scripts/bench-network.sh [N]     (runs per workload, default 30, in 3 interleaved rounds)
#        BERTH_BIN_DIR=DIR uses the berth and berthd in DIR instead of building release binaries
#        SPACING_MS=MS waits MS between runs (each workload alike): a host starting containers now
#        and then, where each run's background work (berth's release and spare attachment, the
#        kernel's veth teardown) is done before the next; without it runs are back to back, so
#        each one also pays for the previous one's background work (a saturated host)
#
#   berth run --rm --network none   busybox /bin/true      berth without networking
#   berth run --rm --network bridge busybox /bin/true      berth with its default bridge network
#   ctr run --rm       local/busybox:latest ID /bin/true   containerd without networking
#   ctr run --rm --cni local/busybox:latest ID /bin/true   containerd with the same conflist
#   plugins alone: bridge + host-local, portmap, firewall ADD then DEL, exec'd by this script
# The added cost is (with network) − (without); the goal is berth's ≤ 0.6 × containerd's.
#
# ctr --cni reads /etc/cni/net.d and /opt/cni/bin and nothing else: the script writes one conflist
# there under a name of its own (refusing to run if other conflists would be read with it), links
# /opt/cni/bin to Debian's /usr/lib/cni if it is missing, and removes both on exit. Bridges,
# subnets, the network namespace and every iptables rule carry this run's own names.
set -euo pipefail

n_runs=${1:-30}
[[ $n_runs =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number of runs, got '$n_runs'" >&2; exit 2; }
spacing_ms=${SPACING_MS:-0}
[[ $spacing_ms =~ ^[0-9]+$ ]] || { echo "SPACING_MS must be a number of milliseconds, got '$spacing_ms'" >&2; exit 2; }
spacing=()
((spacing_ms > 0)) && spacing=(--prepare "sleep $(awk -v ms="$spacing_ms" 'BEGIN { printf "%.3f", ms / 1000 }')")
repo_dir=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/bench-helpers.sh
source "$repo_dir/scripts/bench-helpers.sh"
cd "$repo_dir"
images_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
peer=$repo_dir/scripts/peer-containerd.sh
cni_bin=/usr/lib/cni
[[ $(id -u) -eq 0 ]] || { echo "run this as root: containers need namespaces, mounts and iptables" >&2; exit 1; }
for tool in hyperfine jq iptables ip; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-deps.sh (and apt-get install hyperfine)" >&2; exit 1; }
done
[[ -x $cni_bin/bridge ]] || { echo "no CNI plugins in $cni_bin: apt-get install containernetworking-plugins" >&2; exit 1; }

run_tag=$(printf '%06x' $((($$ * 7919 + RANDOM) % 16777216)))
octet=$((RANDOM % 200 + 20))
berth_bridge=bnb$run_tag peer_bridge=bnc$run_tag floor_bridge=bnf$run_tag
berth_subnet=10.197.$octet.0/24 peer_subnet=10.198.$octet.0/24 floor_subnet=10.196.$octet.0/24
conflist_file=/etc/cni/net.d/90-berth-bench-$run_tag.conflist
floor_netns=berth-bench-$run_tag
made_conf_dir= made_bin_link= berthd_pid=

if [[ -d /etc/cni/net.d ]] && compgen -G '/etc/cni/net.d/*.conf*' >/dev/null; then
  echo "/etc/cni/net.d already holds network configs; ctr --cni would load them too. Move them away first" >&2
  exit 1
fi

release_bin_dir
berth_bin=$bin_dir/berth
[[ -s $images_dir/busybox-oci.tar ]] || bash scripts/build-test-images.sh busybox >&2
bench_dir=$(mktemp -d /var/tmp/berth-bench-network.XXXXXX)
berth_socket=$bench_dir/berthd.sock

# remove_rules_naming WORD...: deletes each iptables rule containing one of WORDs (as iptables-save
# spells it), and flushes and deletes the CNI-<hash> chains those rules jumped to.
remove_rules_naming() {
  local table= line rule target pattern
  pattern=$(printf '%s\n' "$@" | sed 's/[.]/\\./g' | paste -sd'|')
  while IFS= read -r line; do
    [[ $line == \** ]] && { table=${line#\*}; continue; }
    [[ $line == "-A "* ]] || continue
    grep -qE "$pattern" <<<"$line" || continue
    rule=${line#-A }
    eval "iptables -w -t $table -D $rule" 2>/dev/null || continue
    target=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\)\b.*/\1/p' <<<"$rule")
    [[ -n $target ]] && { iptables -w -t "$table" -F "$target" 2>/dev/null; iptables -w -t "$table" -X "$target" 2>/dev/null; }
  done < <(iptables-save)
  return 0
}

# The per-container CNI- chains in nat (24 hex digits), one name a line.
per_container_chains() { iptables-save -t nat | sed -n 's/^:\(CNI-[0-9a-f]\{24\}\) .*/\1/p' | sort; }

# Deletes the per-container chains this run made that are left empty and unreferenced (the
# DELs of some runs drop a chain's rules and the jump to it, not the chain): 2 a run before.
remove_chains_left_empty() {
  local chain save
  save=$(iptables-save -t nat)
  for chain in $(comm -13 <(printf '%s\n' "$chains_before") <(per_container_chains)); do
    grep -qE -- "(-A $chain |-j $chain( |$))" <<<"$save" || iptables -w -t nat -X "$chain" 2>/dev/null
  done
  return 0
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  echo "cleaning up" >&2
  if [[ -n $berthd_pid ]]; then
    mapfile -t left < <(berth ps -a --output json 2>/dev/null | jq -r '.[].id' 2>/dev/null)
    ((${#left[@]})) && berth rm -f "${left[@]}" >/dev/null 2>&1
    kill "$berthd_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$berthd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  bash "$peer" stop >/dev/null 2>&1
  rm -f "$conflist_file"
  [[ -n $made_conf_dir ]] && rmdir /etc/cni/net.d /etc/cni 2>/dev/null
  [[ -n $made_bin_link ]] && rm -f /opt/cni/bin && rmdir /opt/cni 2>/dev/null
  ip netns delete "$floor_netns" 2>/dev/null
  # ctr run --rm --cni leaves its ipMasq and firewall rules behind (containerd 1.6): remove every
  # rule naming this run's networks or subnets, then the per-container chains they jumped to.
  remove_rules_naming "berth-bench-$run_tag" "${peer_subnet%.0/24}." "${berth_subnet%.0/24}." "${floor_subnet%.0/24}."
  remove_chains_left_empty
  for bridge in "$berth_bridge" "$peer_bridge" "$floor_bridge"; do ip link delete "$bridge" 2>/dev/null; done
  awk -v prefix="$bench_dir/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf "$bench_dir"
}
chains_before=$(per_container_chains)
trap cleanup EXIT
trap 'exit 130' INT TERM
mount_volatile_state

# conflist NAME BRIDGE SUBNET IPAM_DIR: the list berth writes for its bridge networks.
conflist() {
  jq -n --arg name "$1" --arg bridge "$2" --arg subnet "$3" --arg ipam "$4" '{cniVersion: "1.0.0", name: $name,
    plugins: [{type: "bridge", bridge: $bridge, isGateway: true, ipMasq: true, hairpinMode: true,
               ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], routes: [{dst: "0.0.0.0/0"}], dataDir: $ipam}},
              {type: "portmap", capabilities: {portMappings: true}}, {type: "firewall"}]}'
}

# ---- set up ------------------------------------------------------------------------------------
setsid "$bin_dir/berthd" --root "$bench_dir/root" --state "$volatile_dir/berth" --address "$berth_socket" \
  --cgroup-parent "/berth-bench-$run_tag" --bridge-name "$berth_bridge" --bridge-subnet "$berth_subnet" \
  >>"$bench_dir/berthd.log" 2>&1 </dev/null &
berthd_pid=$!
for _ in $(seq 100); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
berth image import "$images_dir/busybox-oci.tar" --name busybox >/dev/null
bash "$peer" start >&2
peer_socket=$(bash "$peer" address)
[[ -d /etc/cni/net.d ]] || { mkdir -p /etc/cni/net.d; made_conf_dir=1; }
if [[ ! -e /opt/cni/bin ]]; then mkdir -p /opt/cni; ln -s "$cni_bin" /opt/cni/bin; made_bin_link=1; fi
conflist "berth-bench-$run_tag" "$peer_bridge" "$peer_subnet" "$bench_dir/peer-ipam" >"$conflist_file"
ip netns add "$floor_netns"
floor_list=$(conflist "berth-floor-$run_tag" "$floor_bridge" "$floor_subnet" "$bench_dir/floor-ipam")

# plugins_alone: ADD of the list (each plugin fed the previous result), then DEL in reverse.
# plugins_alone COUNT: COUNT rounds of ADD then DEL of the list, exec'd directly; adds the time
# spent in the plugins (not in jq, which builds each call's config) to floor_us.
plugins_alone() {
  local count=$1 plugin_index config plugin result t0 t1
  for _ in $(seq "$count"); do
    result=null
    for plugin_index in 0 1 2; do
      config=$(jq -c --argjson prev "$result" --argjson i "$plugin_index" \
        '.plugins[$i] + {name, cniVersion} + (if $prev == null then {} else {prevResult: $prev} end) | del(.capabilities)' <<<"$floor_list")
      plugin=$cni_bin/$(jq -r .type <<<"$config")
      t0=$EPOCHREALTIME
      result=$(CNI_COMMAND=ADD CNI_CONTAINERID=floor-$run_tag CNI_NETNS=/run/netns/$floor_netns CNI_IFNAME=eth0 \
        CNI_PATH=$cni_bin "$plugin" <<<"$config")
      t1=$EPOCHREALTIME; floor_us=$((floor_us + 10#${t1/./} - 10#${t0/./}))
    done
    for plugin_index in 2 1 0; do
      config=$(jq -c --argjson prev "$result" --argjson i "$plugin_index" \
        '.plugins[$i] + {name, cniVersion, prevResult: $prev} | del(.capabilities)' <<<"$floor_list")
      plugin=$cni_bin/$(jq -r .type <<<"$config")
      t0=$EPOCHREALTIME
      CNI_COMMAND=DEL CNI_CONTAINERID=floor-$run_tag CNI_NETNS=/run/netns/$floor_netns CNI_IFNAME=eth0 \
        CNI_PATH=$cni_bin "$plugin" <<<"$config" >/dev/null
      t1=$EPOCHREALTIME; floor_us=$((floor_us + 10#${t1/./} - 10#${t0/./}))
    done
  done
}

readonly n_rounds=3
runs_per_round=$(((n_runs + n_rounds - 1) / n_rounds))
round_json() { echo "$bench_dir/$1.$2.json"; }
measure() {
  local name=$1 round=$2; shift 2
  hyperfine -N --style none --warmup 2 --runs "$runs_per_round" "${spacing[@]}" --export-json "$(round_json "$name" "$round")" -- "$*" >/dev/null
}
# mean_ms NAME: the mean over every round, in ms.
mean_ms() { jq -s '[.[].results[0].times[]] | add / length * 1000' "$bench_dir/$1".*.json | awk '{ printf "%.1f", $1 }'; }

git_revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo '+uncommitted changes')"
echo
echo "berth network benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), berth $git_revision"
echo "machine: $(nproc) cores, kernel $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peers: $(containerd --version | awk '{ print "containerd", $3 }'), CNI plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null)"
echo "command: SPACING_MS=$spacing_ms scripts/bench-network.sh $n_runs ($n_rounds interleaved rounds of $runs_per_round; $( ((spacing_ms > 0)) && echo "${spacing_ms} ms between runs, not timed" || echo "back to back"))"
floor_us=0
for round in $(seq "$n_rounds"); do
  measure berth-none "$round" "$berth_bin --address $berth_socket run --rm --network none busybox /bin/true"
  measure berth-bridge "$round" "$berth_bin --address $berth_socket run --rm --network bridge busybox /bin/true"
  measure ctr-none "$round" "ctr --address $peer_socket run --rm local/busybox:latest bench-net /bin/true"
  measure ctr-cni "$round" "ctr --address $peer_socket run --rm --cni local/busybox:latest bench-net /bin/true"
  plugins_alone "$runs_per_round"
done
# (not berth_bridge: that names the bridge the clean-up deletes)
berth_none=$(mean_ms berth-none) berth_with_bridge=$(mean_ms berth-bridge)
ctr_none=$(mean_ms ctr-none) ctr_cni=$(mean_ms ctr-cni)
floor=$(awk -v us="$floor_us" -v n="$((n_rounds * runs_per_round))" 'BEGIN { printf "%.1f", us / n / 1000 }')
berth_added=$(awk -v a="$berth_with_bridge" -v b="$berth_none" 'BEGIN { printf "%.1f", a - b }')
ctr_added=$(awk -v a="$ctr_cni" -v b="$ctr_none" 'BEGIN { printf "%.1f", a - b }')
printf '  %-58s %9s\n' workload "mean ms"
printf '  %-58s %9s\n' "berth run --rm --network none busybox /bin/true" "$berth_none" \
  "berth run --rm --network bridge busybox /bin/true" "$berth_with_bridge" \
  "ctr run --rm local/busybox:latest ID /bin/true" "$ctr_none" \
  "ctr run --rm --cni local/busybox:latest ID /bin/true" "$ctr_cni" \
  "plugins alone: ADD + DEL of the same list (the floor)" "$floor"
echo "  added by networking: berth $berth_added ms, containerd $ctr_added ms, the plugins themselves $floor ms"
awk -v b="$berth_added" -v c="$ctr_added" 'BEGIN {
  r = (c > 0) ? b / c : 0
  if (c <= 0) print "  goal berth/containerd added cost ≤ 0.6×: containerd added nothing measurable; no ratio"
  else if (r <= 0.6) printf "  goal berth/containerd added cost ≤ 0.6×: %.2f× — met\n", r
  else printf "  goal berth/containerd added cost ≤ 0.6×: %.2f× — MISSED, %.0f%% over the goal\n", r, (r / 0.6 - 1) * 100
}'
# While berthd still runs: its spare attachment's rules (about five) are expected on its subnet.
berth_rules=$(iptables-save | grep -c -e "${berth_subnet%.0/24}\." || true)
peer_rules=$(iptables-save | grep -c -e "${peer_subnet%.0/24}\." || true)
echo "  iptables rules naming a subnet after the runs (both daemons still up): berth's $berth_rules (its spare's included), containerd's $peer_rules"
