#!/usr/bin/env bash
# build-test-images.sh — builds the OCI image archives berth's tests import, from Debian packages
# only (no registry access needed), into ${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}:
#
#   busybox-oci.tar  one gzip layer: busybox-static with a symlink per applet, /etc/passwd and
#                    /etc/group with root; cmd /bin/sh; PATH set
#   layers-oci.tar   three layers on the same busybox base, for overlay tests:
#                      2: deletes /data/gone (a directory) and /bin/vi, rewrites /data/keep/a
#                      3: replaces all of /opaque with a single file `new`, adds /data/c
#   debian-oci.tar   (only with `all` or `debian`) Debian bookworm, debootstrap minbase
#
# usage: scripts/build-test-images.sh [--force] [busybox|layers|debian|all]...
#        (no target: busybox and layers). An archive already present is kept unless --force.
# Needs root (device nodes, ownership) and installs busybox-static, umoci, skopeo and debootstrap
# with apt-get when they are missing.
set -euo pipefail

out_dir=${BERTH_TESTIMAGES:-/var/tmp/berth-testimages}
readonly default_path='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
force=0
targets=()
for arg in "$@"; do
  case $arg in
    --force) force=1 ;;
    busybox|layers|debian) targets+=("$arg") ;;
    all) targets+=(busybox layers debian) ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument '$arg'; usage: $0 [--force] [busybox|layers|debian|all]..." >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(busybox layers)

if [[ $(id -u) -ne 0 ]]; then
  echo "run this as root: image layers must record root ownership and device nodes" >&2
  exit 1
fi
mkdir -p "$out_dir"

# Work directories are collected here and removed on any exit, so a failed build leaves no mess.
work_dirs=()
cleanup() { ((${#work_dirs[@]})) && rm -rf "${work_dirs[@]}"; return 0; }
trap cleanup EXIT
# new_work_dir VAR: makes a work directory, stores its path in VAR and registers it for cleanup
# (not via $(…): a subshell could not add to work_dirs).
new_work_dir() {
  local dir; dir=$(mktemp -d /var/tmp/berth-image-build.XXXXXX)
  work_dirs+=("$dir")
  printf -v "$1" '%s' "$dir"
}

install_missing_packages() {
  local package missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  echo "installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# already_built NAME: true (and says so) when the archive exists and --force was not given.
already_built() {
  if [[ -s $out_dir/$1 && $force -eq 0 ]]; then
    echo "$out_dir/$1 exists; keeping it (--force rebuilds)"
    return 0
  fi
  return 1
}

# fill_busybox_root DIR: a minimal root file system around the static busybox binary.
fill_busybox_root() {
  local root=$1 applet
  mkdir -p "$root"/{bin,etc,dev,proc,sys,tmp,root}
  chmod 1777 "$root/tmp"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
}

# start_layout WORK TAG: an empty image in WORK/layout and its runtime bundle in WORK/bundle.
start_layout() {
  local work=$1 tag=$2
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$tag"
  umoci unpack --image "$work/layout:$tag" "$work/bundle" >/dev/null
}

# add_layer WORK TAG: records what changed in WORK/bundle/rootfs as a new gzip layer.
add_layer() {
  # umoci notices a changed directory by its mtime; builds faster than the clock's granularity
  # would leave the parents of changed files out of the layer, so let the clock move on first.
  sleep 1
  umoci repack --refresh-bundle --image "$1/layout:$2" "$1/bundle" >/dev/null
}

# finish_archive WORK TAG NAME CMD PATHENV: sets the config, drops unreferenced blobs and writes
# the layout as a tar (the form `skopeo copy … oci-archive:` reads), replacing any old one.
finish_archive() {
  local work=$1 tag=$2 name=$3 cmd=$4 path_env=$5
  umoci config --image "$work/layout:$tag" --config.cmd "$cmd" --config.env "$path_env" >/dev/null
  umoci gc --layout "$work/layout"
  tar -C "$work/layout" -cf "$out_dir/$name.partial" .
  mv -f "$out_dir/$name.partial" "$out_dir/$name"
  echo "wrote $out_dir/$name"
}

build_busybox() {
  already_built busybox-oci.tar && return 0
  install_missing_packages busybox-static umoci
  local work; new_work_dir work
  start_layout "$work" latest
  fill_busybox_root "$work/bundle/rootfs"
  # One layer, every file new: with fixed times its tar (and so its diff id, which snapshots and
  # recorded containers are keyed by) depends only on busybox-static's version, on any machine.
  find "$work/bundle/rootfs" -exec touch -h -d @1700000000 {} +
  add_layer "$work" latest
  finish_archive "$work" latest busybox-oci.tar /bin/sh "$default_path"
}

build_layers() {
  already_built layers-oci.tar && return 0
  install_missing_packages busybox-static umoci
  local work root; new_work_dir work
  start_layout "$work" layers
  root=$work/bundle/rootfs
  # Layer 1: busybox plus the files the upper layers will change.
  fill_busybox_root "$root"
  mkdir -p "$root/data/keep" "$root/data/gone" "$root/opaque"
  echo one >"$root/data/keep/a"
  echo doomed >"$root/data/gone/b"
  echo old >"$root/opaque/old"
  add_layer "$work" layers
  # Layer 2: whiteouts for a directory and a file, and a changed file.
  rm -rf "$root/data/gone" "$root/bin/vi"
  echo two >"$root/data/keep/a"
  add_layer "$work" layers
  # Layer 3: the whole content of /opaque replaced, and a new file.
  rm -rf "$root/opaque"
  mkdir "$root/opaque"
  echo new >"$root/opaque/new"
  echo three >"$root/data/c"
  add_layer "$work" layers
  finish_archive "$work" layers layers-oci.tar /bin/sh PATH=/bin
  echo "  (mounted, it shows /data/keep/a=two, no /data/gone, no /bin/vi, /opaque/new only, /data/c=three)"
}

build_debian() {
  already_built debian-oci.tar && return 0
  install_missing_packages umoci debootstrap
  local work; new_work_dir work
  start_layout "$work" bookworm
  # debootstrap wants an empty or missing target; the bundle's rootfs is empty at this point.
  debootstrap --variant=minbase bookworm "$work/bundle/rootfs" >/dev/null
  add_layer "$work" bookworm
  finish_archive "$work" bookworm debian-oci.tar /bin/bash "$default_path"
}

for target in "${targets[@]}"; do
  "build_$target"
done
