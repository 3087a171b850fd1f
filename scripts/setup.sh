#!/usr/bin/env bash
# Set up hwaml and every first-party plugin on a fresh Debian machine (as root,
# or with sudo). Idempotent: running it again only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

# System packages: gcc/make build TinyEngine's generated C; ngspice (shared
# library + the -dev link that PySpice/InSpice dlopen) simulates circuits.
need_apt=""
for pkg in gcc make ngspice libngspice0 libngspice0-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt="$need_apt $pkg"
done
if [ -n "$need_apt" ]; then
  echo "setup: installing system packages:$need_apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt >/dev/null
fi

PIP="python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# torch first and pinned: the CPU build. Anything that depends on torch later
# finds it satisfied instead of pulling a CUDA build.
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || $PIP install -q torch==2.13.0

# The core and every plugin in one pip command, so pip resolves the local names.
args=(-e ".[test,launchers,ray]")
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && args+=(-e "$p")
done
$PIP install -q "${args[@]}"
echo "setup: done ($(python -c 'import hwaml; print("hwaml", hwaml.__version__)'))"
