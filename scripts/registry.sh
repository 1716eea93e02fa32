#!/usr/bin/env bash
# A real OCI distribution registry (Debian's docker-registry) on loopback, for berth's pull tests
# and benchmark. Each registry lives in a directory of its own: config, storage, log, pid.
#
#   registry.sh start DIR PORT [--tls CERT KEY] [--htpasswd FILE]
#       serve on 127.0.0.1:PORT (plain HTTP unless --tls; basic auth with --htpasswd, which
#       docker-registry accepts only together with TLS); waits until /v2/ answers
#   registry.sh push DIR PORT ARCHIVE REPO:TAG [--ca CERT] [--creds USER:PASSWORD]
#       copy an OCI archive into it with skopeo
#   registry.sh stop DIR
#       stop it (the directory stays for the caller to remove)
set -euo pipefail
command=${1:-}
dir=${2:-}
[ -n "$command" ] && [ -n "$dir" ] || { echo "usage: $0 start|push|stop DIR ..." >&2; exit 2; }
case $command in
  start)
    port=${3:?port}
    shift 3
    tls=""; auth=""
    while (($#)); do
      case $1 in
        --tls) tls="  tls:
    certificate: $2
    key: $3"; shift 3 ;;
        --htpasswd) auth="auth:
  htpasswd:
    realm: berth-test
    path: $2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    command -v docker-registry >/dev/null || { echo "docker-registry is missing: run scripts/install-deps.sh" >&2; exit 1; }
    mkdir -p "$dir/data"
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
$auth
http:
  addr: 127.0.0.1:$port
$tls
CONFIG
    setsid docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    scheme=http; [ -n "$tls" ] && scheme=https
    for _ in $(seq 100); do
      # Any HTTP answer (401 with auth) means it is serving.
      code=$(curl -sk -o /dev/null -w '%{http_code}' "$scheme://127.0.0.1:$port/v2/" || true)
      [ "$code" = 200 ] || [ "$code" = 401 ] && exit 0
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "docker-registry exited:" >&2; cat "$dir/log" >&2; exit 1; }
      sleep 0.1
    done
    echo "docker-registry did not answer on port $port:" >&2; cat "$dir/log" >&2; exit 1
    ;;
  push)
    port=${3:?port}; archive=${4:?archive}; target=${5:?repo:tag}
    shift 5
    options=(--dest-tls-verify=false)
    while (($#)); do
      case $1 in
        --ca) certs="$dir/push-certs"; mkdir -p "$certs"; cp "$2" "$certs/ca.crt"; options=(--dest-cert-dir "$certs"); shift 2 ;;
        --creds) options+=(--dest-creds "$2"); shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    skopeo copy -q "${options[@]}" "oci-archive:$archive" "docker://127.0.0.1:$port/$target"
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      kill "$(cat "$dir/pid")" 2>/dev/null || true
      rm -f "$dir/pid"
    fi
    ;;
  *) echo "usage: $0 start|push|stop DIR ..." >&2; exit 2 ;;
esac
