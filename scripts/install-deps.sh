#!/usr/bin/env bash
# Installs what berth needs to build, run and test on Debian 12 (run as root):
# runc, the image tools used by the fixtures, protoc for the gRPC code, and checks for a Rust
# toolchain new enough for the workspace (1.88+, via rustup: Debian's own cargo is too old).
set -euo pipefail
# docker-registry (the distribution registry), apache2-utils (htpasswd) and openssl: the registry
# pull and push tests (scripts/registry.sh, tests/tests/registry_*.rs). containerd: the export
# test imports berth's export with `ctr` into a throwaway containerd (scripts/peer-containerd.sh),
# and the benchmarks compare against it. systemd (systemd-analyze verify), zsh and fish: the
# service tests check berthd's unit and that each shell reads berth's completion scripts.
# containernetworking-plugins and iptables: berthd's CNI networking (bridge, host-local, portmap,
# firewall, loopback in /usr/lib/cni; portmap and firewall run iptables), tests/tests/network.rs
# and scripts/bench-network.sh. hyperfine: the benchmark scripts that time whole commands
# (bench-exec.sh, bench-network.sh).
packages=(runc umoci skopeo busybox-static debootstrap protobuf-compiler ca-certificates curl jq iproute2 util-linux
  docker-registry apache2-utils openssl containerd systemd zsh fish containernetworking-plugins iptables hyperfine)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  for candidate in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
    [ -x "$candidate/cargo" ] && export PATH="$candidate:$PATH"
  done
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "no Rust toolchain: install one with rustup (https://rustup.rs), Rust 1.88 or newer" >&2
  exit 1
fi
# The suite checks formatting and clippy: both come with rustup's default profile; add them if
# this toolchain was installed without them.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      rustup component add "$component"
    else
      echo "cargo ${component/rustfmt/fmt} is missing and there is no rustup to add it: install $component" >&2
      exit 1
    fi
  fi
done
# tests/tests/grpc_c_core.rs drives berthd with Python's grpcio, the stock C-core gRPC client.
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
  echo "installing grpcio (PyPI) for the C-core client test"
  python3 -m pip install --quiet grpcio
fi
