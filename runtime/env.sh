#!/usr/bin/env bash
# One runtime for ppml on Debian 12 and 13.
#
# TFX 1.21 (ml-metadata, TFDV) ships only manylinux_2_39 wheels: they load where glibc >= 2.39 and
# libstdc++ from GCC 13+ are present. Where they are, a native virtualenv is used. Elsewhere (Debian 12,
# glibc 2.36) a Debian 13 root is built with debootstrap and entered with `unshare --mount --fork` +
# chroot, with /proc mounted. Both live in a cache outside the checkout and are reused; the virtualenv is
# rebuilt when runtime/constraints.txt or setup.cfg's install sections change, the root when this recipe's ROOT_RECIPE does.
#
# Usage: runtime/env.sh setup | exec CMD [ARG...] | shell | info
# Environment: PPML_CACHE (cache folder, default ~/.cache/ppml), PPML_RUNTIME (native|chroot: force one).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PPML_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ppml}"
CONSTRAINTS="$REPO/runtime/constraints.txt"
SUITE=trixie
ROOT_PACKAGES=python3,python3-venv,python3-dev,g++,ca-certificates
ROOT_RECIPE="$SUITE:$ROOT_PACKAGES:v1"
ROOT="$CACHE/root-$SUITE"
ROOT_VENV=/opt/ppml-venv            # path inside the root
NATIVE_VENV="$CACHE/venv-native"

log() { printf '[ppml runtime] %s\n' "$*" >&2; }
die() { printf '[ppml runtime] error: %s\n' "$*" >&2; exit 1; }

# What the virtualenv depends on: the lock file and setup.cfg's install sections (not, e.g., pytest settings).
deps_hash() {
  { cat "$CONSTRAINTS"
    awk '/^\[/ {keep = ($0 ~ /^\[options(\.extras_require|\.entry_points|\.packages\.find)?\]$/)} keep' "$REPO/setup.cfg"
  } | sha256sum | cut -c1-16
}

# --- choosing the runtime -------------------------------------------------------------------------
native_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import sys, venv; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13)))' 2>/dev/null; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

host_loads_tfx_wheels() {
  local glibc libstdcxx
  glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
  [ -n "$glibc" ] || return 1
  printf '2.39\n%s\n' "$glibc" | sort -V -C || return 1       # sorted means 2.39 <= glibc
  libstdcxx="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')"
  [ -n "$libstdcxx" ] && grep -qa 'GLIBCXX_3\.4\.32' "$libstdcxx" || return 1   # GCC 13+
  native_python >/dev/null
}

runtime_kind() {
  case "${PPML_RUNTIME:-}" in
    native|chroot) echo "$PPML_RUNTIME" ;;
    "") if host_loads_tfx_wheels; then echo native; else echo chroot; fi ;;
    *) die "PPML_RUNTIME must be 'native' or 'chroot', not '$PPML_RUNTIME'" ;;
  esac
}

# --- the Debian 13 root ---------------------------------------------------------------------------
host_debian_mirror() {
  # The first Debian archive URI in the host's apt sources (deb822 or one-line format).
  local url=""
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    url="$(awk 'tolower($1)=="uris:" {for (i=2; i<=NF; i++) if ($i !~ /security/) {print $i; exit}}' \
           /etc/apt/sources.list.d/*.sources)"
  fi
  if [ -z "$url" ] && [ -f /etc/apt/sources.list ]; then
    url="$(awk '$1=="deb" && $0 !~ /security/ {for (i=2; i<=NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' \
           /etc/apt/sources.list)"
  fi
  [ -n "$url" ] || die "no Debian mirror found in /etc/apt/sources.list{,.d}; cannot build the $SUITE root"
  echo "${url%/}"
}

build_root() {
  [ "$(id -u)" = 0 ] || die "building the $SUITE root needs root (debootstrap, unshare)"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  local mirror tmp
  mirror="$(host_debian_mirror)"
  tmp="$ROOT.partial"
  rm -rf "$tmp" "$ROOT"
  mkdir -p "$CACHE"
  log "debootstrap $SUITE from the host's mirror (a few minutes)"
  debootstrap --variant=minbase --include="$ROOT_PACKAGES" "$SUITE" "$tmp" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $CACHE/debootstrap.log"
  # Name resolution and the host's extra CA certificates (TLS to the package index may be intercepted).
  cp -L /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/"
  fi
  in_root_raw "$tmp" update-ca-certificates >/dev/null
  echo "$ROOT_RECIPE" >"$tmp/.ppml-root"
  mv "$tmp" "$ROOT"
}

# Run a command inside root $1 (a private mount namespace: nothing is left mounted afterwards).
# The checkout and /tmp are bind-mounted at their own paths, so paths mean the same inside and out.
in_root_raw() {
  local root="$1"; shift
  local binds=("$REPO" /tmp)
  local envs=(HOME=/root LANG=C.UTF-8 "PATH=$ROOT_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
              "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" PIP_CONFIG_FILE=/dev/null
              PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
  local var
  for var in $(compgen -e); do
    case "$var" in
      TERM|COLUMNS|LINES|CI|NO_COLOR|PYTEST_ADDOPTS|TF_*|PPML_*|OPENBLAS_*|OMP_NUM_THREADS) envs+=("$var=${!var}") ;;
    esac
  done
  # shellcheck disable=SC2016
  local script='set -e
    r="$1"; n="$2"; shift 2
    mount -t proc proc "$r/proc"
    mount --rbind /dev "$r/dev"
    mount --rbind /sys "$r/sys" 2>/dev/null || true
    while [ "$n" -gt 0 ]; do mkdir -p "$r$1"; mount --bind "$1" "$r$1"; shift; n=$((n - 1)); done
    cwd="$1"; n="$2"; shift 2
    envs=(); while [ "$n" -gt 0 ]; do envs+=("$1"); shift; n=$((n - 1)); done
    exec chroot "$r" /usr/bin/env -i "${envs[@]}" /bin/sh -c '"'"'cd "$0" 2>/dev/null || cd /; exec "$@"'"'"' "$cwd" "$@"'
  unshare --mount --propagation private --fork bash -c "$script" ppml-root \
    "$root" "${#binds[@]}" "${binds[@]}" "$PWD" "${#envs[@]}" "${envs[@]}" "$@"
}

# --- the virtualenv -------------------------------------------------------------------------------
# A venv is reused while the dependency hash matches; a checkout at another path only needs the
# editable install of ppml itself redone (seconds), not the whole stack.
venv_current() {   # $1 = venv path on the host
  [ -f "$1/.ppml-deps" ] && [ "$(cat "$1/.ppml-deps")" = "$(deps_hash)" ]
}

install_into_venv() {   # $1 = runner prefix ("" for native), $2 = venv path as seen by the runner
  local run="$1" venv="$2"
  $run "$venv/bin/python" -m pip install -q --upgrade -c "$CONSTRAINTS" pip
  $run "$venv/bin/python" -m pip install -q -c "$CONSTRAINTS" -e "$REPO[tfx,test]"
}

link_checkout() {   # $1 = runner prefix, $2 = venv path as seen by the runner, $3 = venv path on the host
  [ -f "$3/.ppml-repo" ] && [ "$(cat "$3/.ppml-repo")" = "$REPO" ] && return 0
  log "installing this checkout ($REPO) into the virtualenv"
  $1 "$2/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$REPO"
  echo "$REPO" >"$3/.ppml-repo"
}

setup_native() {
  if ! venv_current "$NATIVE_VENV"; then
    local py; py="$(native_python)" || die "no Python 3.11-3.13 with venv on this host"
    log "building the native virtualenv in $NATIVE_VENV with $py (pip install, a few minutes)"
    rm -rf "$NATIVE_VENV"; mkdir -p "$CACHE"
    "$py" -m venv "$NATIVE_VENV"
    PIP_CONFIG_FILE=/dev/null install_into_venv "" "$NATIVE_VENV"
    deps_hash >"$NATIVE_VENV/.ppml-deps"; echo "$REPO" >"$NATIVE_VENV/.ppml-repo"
  fi
  PIP_CONFIG_FILE=/dev/null link_checkout "" "$NATIVE_VENV" "$NATIVE_VENV"
}

setup_chroot() {
  if [ ! -f "$ROOT/.ppml-root" ] || [ "$(cat "$ROOT/.ppml-root")" != "$ROOT_RECIPE" ]; then build_root; fi
  if ! venv_current "$ROOT$ROOT_VENV"; then
    log "building the virtualenv inside the $SUITE root (pip install, a few minutes)"
    rm -rf "${ROOT:?}$ROOT_VENV"
    in_root_raw "$ROOT" python3 -m venv "$ROOT_VENV"
    install_into_venv "in_root_raw $ROOT" "$ROOT_VENV"
    deps_hash >"$ROOT$ROOT_VENV/.ppml-deps"; echo "$REPO" >"$ROOT$ROOT_VENV/.ppml-repo"
  fi
  link_checkout "in_root_raw $ROOT" "$ROOT_VENV" "$ROOT$ROOT_VENV"
}

cmd_setup() {
  local kind; kind="$(runtime_kind)"
  [ -f "$CONSTRAINTS" ] || die "missing $CONSTRAINTS"
  case "$kind" in native) setup_native ;; chroot) setup_chroot ;; esac
}

cmd_exec() {
  [ $# -gt 0 ] || die "exec needs a command"
  case "$(runtime_kind)" in
    native) PATH="$NATIVE_VENV/bin:$PATH" exec "$@" ;;
    chroot) in_root_raw "$ROOT" "$@" ;;
  esac
}

cmd_info() {
  local kind; kind="$(runtime_kind)"
  echo "runtime: $kind"
  echo "cache:   $CACHE"
  case "$kind" in
    native) echo "venv:    $NATIVE_VENV" ;;
    chroot) echo "root:    $ROOT ($SUITE)"; echo "venv:    $ROOT_VENV (inside the root)" ;;
  esac
}

case "${1:-}" in
  setup) cmd_setup ;;
  exec) shift; cmd_exec "$@" ;;
  shell) cmd_exec bash ;;
  info) cmd_info ;;
  *) die "usage: runtime/env.sh setup | exec CMD [ARG...] | shell | info" ;;
esac
