#!/usr/bin/env bash
# Installs berth on this host (as root), or into a staging directory for a package.
#
#   scripts/install.sh [--prefix DIR] [--binaries DIR] [--uninstall]
#
#   --prefix DIR    where binaries, completions and man pages go (default /usr/local):
#                   DIR/bin/{berthd,berth,berth-monitor,berth-replay},
#                   DIR/share/bash-completion/completions/, DIR/share/zsh/site-functions/,
#                   DIR/share/fish/vendor_completions.d/, DIR/share/man/man1/ and man8/
#   --binaries DIR  take the built binaries from DIR instead of building them
#                   (default: `cargo build --release`, then target/release)
#   --uninstall     remove everything an earlier install listed in
#                   DIR/share/berth/installed-files; keeps /etc/berth (the configuration) and
#                   /var/lib/berth (the log, images and containers' data)
#   DESTDIR=DIR     (environment) stage every path under DIR, for packaging; nothing on this
#                   host is started, stopped or reloaded then
#
# The unit goes to /etc/systemd/system/berthd.service (DIR/lib/systemd/system with a --prefix
# other than /usr/local), its ExecStart pointing at DIR/bin/berthd; the configuration to
# /etc/berth/berthd.toml (directory 0700, file 0600), never over one that exists. Running it
# again installs the same files again and keeps the configuration: it is idempotent.
set -euo pipefail

prefix=/usr/local
binaries=""
uninstall=false
while (($#)); do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#--prefix=}"; shift ;;
    --binaries) binaries="${2:?--binaries needs a directory}"; shift 2 ;;
    --binaries=*) binaries="${1#--binaries=}"; shift ;;
    --uninstall) uninstall=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'; see scripts/install.sh --help" >&2; exit 2 ;;
  esac
done
case "$prefix" in
  /*) prefix="${prefix%/}" ;;
  *) echo "install.sh: --prefix must be an absolute path (it is written into the unit), not '$prefix'" >&2; exit 2 ;;
esac
destdir="${DESTDIR:-}"
destdir="${destdir%/}"
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root to install on this host, or set DESTDIR to stage the files for a package" >&2
  exit 1
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$destdir$prefix/share/berth/installed-files"
# With systemd as PID 1 and no staging directory, this host's systemd is told about the unit.
live_systemd=false
if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  live_systemd=true
fi

if $uninstall; then
  if [ ! -f "$manifest" ]; then
    echo "install.sh: nothing to uninstall: $manifest is missing (was berth installed with this --prefix and DESTDIR?)" >&2
    exit 1
  fi
  if $live_systemd; then
    # The containers keep running (KillMode=process); their monitors outlive berthd.
    systemctl disable --now berthd.service || true
  fi
  while IFS= read -r path; do
    [ -n "$path" ] && rm -f -- "$destdir$path"
  done <"$manifest"
  rm -f -- "$manifest"
  rmdir -- "$destdir$prefix/share/berth" 2>/dev/null || true
  $live_systemd && systemctl daemon-reload
  echo "uninstalled berth from $destdir$prefix; kept /etc/berth (configuration) and /var/lib/berth (log and data): remove them by hand if you mean to"
  exit 0
fi

if [ -z "$binaries" ]; then
  (cd "$repo" && cargo build --release --locked -p berth-runtime -p berth-replay --bins)
  binaries="$repo/target/release"
fi
for binary in berthd berth berth-monitor berth-replay; do
  if [ ! -x "$binaries/$binary" ]; then
    echo "install.sh: $binaries/$binary is missing: build first (cargo build --release) or pass --binaries DIR" >&2
    exit 1
  fi
done

if [ "$prefix" = /usr/local ]; then
  unit_dir=/etc/systemd/system
else
  unit_dir="$prefix/lib/systemd/system"
fi
installed=()
# install_file MODE SOURCE PATH: PATH (without DESTDIR) gets SOURCE's content and MODE.
install_file() {
  install -D -m "$1" -- "$2" "$destdir$3"
  installed+=("$3")
}

for binary in berthd berth berth-monitor berth-replay; do
  install_file 0755 "$binaries/$binary" "$prefix/bin/$binary"
done

generated="$(mktemp -d)"
trap 'rm -rf -- "$generated"' EXIT
sed "s|/usr/local/bin/berthd|$prefix/bin/berthd|" "$repo/contrib/systemd/berthd.service" >"$generated/berthd.service"
install_file 0644 "$generated/berthd.service" "$unit_dir/berthd.service"

# Completions and man pages come from the binaries themselves, so they match what is installed.
for binary in berth berth-replay berthd; do
  for shell in bash zsh fish; do
    if [ "$binary" = berthd ]; then
      "$binaries/berthd" --completion "$shell" >"$generated/$binary.$shell"
    else
      "$binaries/$binary" completion "$shell" >"$generated/$binary.$shell"
    fi
  done
  install_file 0644 "$generated/$binary.bash" "$prefix/share/bash-completion/completions/$binary"
  install_file 0644 "$generated/$binary.zsh" "$prefix/share/zsh/site-functions/_$binary"
  install_file 0644 "$generated/$binary.fish" "$prefix/share/fish/vendor_completions.d/$binary.fish"
done
mkdir -p "$generated/man"
"$binaries/berth" man "$generated/man"
"$binaries/berth-replay" man "$generated/man"
"$binaries/berthd" --man "$generated/man"
for page in "$generated"/man/*.1; do
  install_file 0644 "$page" "$prefix/share/man/man1/$(basename "$page")"
done
install_file 0644 "$generated/man/berthd.8" "$prefix/share/man/man8/berthd.8"

# The configuration is the operator's once it exists: never overwritten, never listed for removal.
install -d -m 0700 -- "$destdir/etc/berth"
chmod 0700 -- "$destdir/etc/berth"
if [ -e "$destdir/etc/berth/berthd.toml" ]; then
  chmod go-rwx -- "$destdir/etc/berth/berthd.toml"
  echo "kept the existing $destdir/etc/berth/berthd.toml (the example is $repo/contrib/berthd.toml)"
else
  install -m 0600 -- "$repo/contrib/berthd.toml" "$destdir/etc/berth/berthd.toml"
fi

# What a later --uninstall removes: this install's files, plus any an earlier one listed that
# this one no longer makes (a man page of a verb since removed).
mkdir -p -- "$(dirname "$manifest")"
{
  printf '%s\n' "${installed[@]}"
  if [ -f "$manifest" ]; then cat -- "$manifest"; fi
} | sort -u >"$generated/installed-files"
install -m 0644 -- "$generated/installed-files" "$manifest"

if $live_systemd; then
  systemctl daemon-reload
  echo "installed; start berthd with: systemctl enable --now berthd"
else
  echo "installed into $destdir$prefix (unit: $destdir$unit_dir/berthd.service)"
fi
