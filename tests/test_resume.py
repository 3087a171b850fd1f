"""A run killed with SIGKILL resumes with no finished trial lost and none evaluated twice."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest


def _finished(db):
    try:
        con = sqlite3.connect(db, timeout=1)
        rows = con.execute("SELECT number, config, metrics FROM trials WHERE status != 'pending' ORDER BY number").fetchall()
        con.close()
        return rows
    except sqlite3.Error:
        return []


def _args(run_dir, trace, trials, *extra, searcher="evolution"):
    tuning = ["searcher.population_size=6"] if searcher == "evolution" else []
    return [
        "run",
        "evaluator=analytic",
        f"searcher={searcher}",
        *tuning,
        f"evaluator.trace_file={trace}",
        "evaluator.sleep_s=0.05",
        f"budget.trials={trials}",
        "seed=7",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


@pytest.mark.parametrize("searcher", ["evolution", "optuna_tpe"])
def test_sigkill_then_resume(tmp_path, cli, searcher):
    run_dir = tmp_path / "killed"
    trace = tmp_path / "trace.txt"
    trials = 30
    args = _args(run_dir, trace, trials, searcher=searcher)
    proc = subprocess.Popen([sys.executable, "-m", "hwaml.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run_dir / "trials.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and len(_finished(db)) < 10:
        time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _finished(db)
    assert 10 <= len(before) < trials, "the run should have been killed part-way"

    out = cli(*args, "resume=true", timeout=300)
    assert out.returncode == 0, out.stderr
    after = _finished(db)
    # nothing finished before the kill was lost or changed
    assert after[: len(before)] == before
    assert [r[0] for r in after] == list(range(trials))
    # no trial was evaluated twice (the one in flight at the kill may have been
    # started, but it never finished, so it is not in the trace twice)
    counts = Counter(int(x) for x in trace.read_text().split())
    assert max(counts.values()) == 1
    assert set(counts) == set(range(trials))

    # and the resumed history is the one an uninterrupted run with the same seed makes
    ref_dir = tmp_path / "reference"
    ref = cli(*_args(ref_dir, tmp_path / "t2.txt", trials, "evaluator.sleep_s=0.0", searcher=searcher), timeout=300)
    assert ref.returncode == 0, ref.stderr
    ref_rows = _finished(ref_dir / "trials.sqlite")
    assert [r[1] for r in ref_rows] == [r[1] for r in after]


def test_resume_with_another_seed_is_refused(tmp_path, cli):
    run_dir = tmp_path / "r"
    assert cli(*_args(run_dir, tmp_path / "t", 3), "evaluator.sleep_s=0").returncode == 0
    out = cli(*_args(run_dir, tmp_path / "t", 5), "evaluator.sleep_s=0", "seed=8", "resume=true")
    assert out.returncode != 0
    assert "seed=7" in out.stderr + out.stdout
