"""End to end through the hwaml CLI: train on digits, quantise, deploy the
trained trial as a C project found through its artifacts; int8 (Python and C)
accuracy within 1 point of float."""

import json
import os
import subprocess
import sys

from hwaml.store import TrialStore


def test_cli_digits_int8_within_one_point_and_c_deploy_matches(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "evaluator=tinyengine_digits",
        "backend=[stm32f746]",
        "searcher=random",
        "budget.trials=1",
        "evaluator.epochs=8",
        "evaluator.resolutions=[16]",
        "evaluator.widths=[0.5]",
        "evaluator.kernels=[3]",
        "evaluator.expands=[3]",
        "evaluator.depths=[4]",
        "progress=false",
        "plots=false",
        "deploy.enabled=true",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "hwaml.cli", "run", *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    best = json.loads((run_dir / "best.json").read_text())["best"]
    m = best["metrics"]
    assert m["float_accuracy"] > 0.85
    assert abs(m["int8_accuracy"] - m["float_accuracy"]) <= 0.01, m
    cost = best["cost"]
    assert cost["fits"] == 1.0 and cost["peak_sram_kb"] < 320
    assert cost["energy_mj"] > 0 and cost["macs_m"] > 0
    with TrialStore(run_dir / TrialStore.FILENAME) as store:
        deps = store.deployments()
    assert len(deps) == 1, deps  # the TinyEngine backend is the run's only deploy target
    dep = deps[0]
    assert dep["ok"], dep
    metrics = dep["metrics"]
    assert metrics["outputs_matched"] == 1.0
    # the C code runs the whole test split bit-exactly, so its accuracy is the int8 one
    assert metrics["c_accuracy"] == m["int8_accuracy"]
    assert abs(metrics["c_accuracy"] - metrics["float_accuracy"]) <= 0.01
    assert (run_dir / "deploy" / f"tinyengine_trial_{best['number']}" / "Makefile").exists()
