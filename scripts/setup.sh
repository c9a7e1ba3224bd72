#!/usr/bin/env bash
# Idempotent set-up: the Debian packages boxnet and its tests use, and a venv with boxnet installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(nftables libnftables1 iproute2 util-linux procps iputils-ping tcpdump iperf3 dnsutils dnsperf tshark graphviz curl
          busybox-static python3-venv etcd-server openssl ethtool wireguard-go wireguard-tools)
# The image tests' registry and its filler, and docker-compose: without their recommends, which would bring a
# Docker engine (docker.io, containerd) that nothing here wants on the machine.
BARE_PACKAGES=(skopeo docker-registry docker-compose)
missing() {
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
UPDATED=""
install() {
  local wanted; wanted=$(missing "${@:2}")
  [ -n "$wanted" ] || return 0
  echo "setup: installing" $wanted
  [ -n "$UPDATED" ] || { $SUDO apt-get update -qq; UPDATED=1; }
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $1 $wanted >/dev/null
}
install "" "${PACKAGES[@]}"
install --no-install-recommends "${BARE_PACKAGES[@]}"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import boxnet, pyroute2, pytest, docker, hypothesis, cryptography, zstandard, yaml" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  # compat mode: a plain path in a .pth file, not an import hook that every `boxnet` start would pay for
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
  touch .venv/.installed
fi
# pip's launcher imports re, only to strip a Windows ".exe" from argv[0]: with enum under it, ~8 ms of every
# `boxnet` command. The CLI avoids re (see boxnet/cli/flags.py), so its launcher does too.
cat > .venv/bin/boxnet <<LAUNCHER
#!$(pwd)/.venv/bin/python
import sys

from boxnet.cli.main import main

sys.exit(main())
LAUNCHER
# Byte-compile up front: with PYTHONDONTWRITEBYTECODE set (as on these machines) every `boxnet` would
# otherwise compile its modules anew, ~15 ms of each command. Only stale files are recompiled.
.venv/bin/python -m compileall -q boxnet >/dev/null
echo "setup: ok (.venv/bin/boxnet, .venv/bin/boxnetd)"
