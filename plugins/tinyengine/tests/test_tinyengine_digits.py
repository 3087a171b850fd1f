"""End to end through the hwaml CLI: train on digits, quantise, deploy the C
project; int8 (Python and C) accuracy within 1 point of float."""

import json
import os
import subprocess
import sys


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
    assert best["cost"]["fits"] == 1.0 and best["cost"]["peak_sram_kb"] < 320
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("metrics:"))
    dep = json.loads(line.split("metrics:", 1)[1])
    assert "ok" in proc.stdout and dep["outputs_matched"] == 1.0
    # the C code runs the whole test split bit-exactly, so its accuracy is the int8 one
    assert dep["c_accuracy"] == m["int8_accuracy"]
    assert abs(dep["c_accuracy"] - dep["float_accuracy"]) <= 0.01
    assert (run_dir / "deploy" / f"tinyengine_trial_{best['number']}" / "Makefile").exists()
