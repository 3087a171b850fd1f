"""Hydra multirun over two searchers on each launcher, and the cross-job report."""

import csv

import pytest


@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local", "ray"])
def test_multirun_two_searchers(tmp_path, cli, launcher):
    sweep = tmp_path / "sweep"
    args = [
        "run",
        "--multirun",
        "searcher=random,optuna_tpe",
        "evaluator=analytic",
        "budget.trials=6",
        f"hydra.sweep.dir={sweep}",
    ]
    if launcher != "basic":
        args.append(f"hydra/launcher={launcher}")
    if launcher == "joblib":
        args.append("hydra.launcher.n_jobs=2")
    out = cli(*args, env={"RAY_AUTH_MODE": "disabled", "HWAML_LOAD_PLUGINS": ""}, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.rglob("trials.sqlite"))
    assert len(jobs) == 2
    for job in jobs:
        assert (job / "trials.csv").exists() and (job / "best.json").exists()

    rep = cli("report", sweep)
    assert rep.returncode == 0, rep.stderr
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert len(rows) == 2
    assert {r["overrides"].split()[0] for r in rows} == {"searcher=random", "searcher=optuna_tpe"}
    assert all(int(r["trials"]) == 6 and 0.0 < float(r["accuracy"]) <= 1.0 for r in rows)
    assert (sweep / "summary.png").stat().st_size > 1000
    assert "searcher=optuna_tpe" in rep.stdout
