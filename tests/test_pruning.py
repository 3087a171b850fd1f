"""Intermediate values, Optuna's pruners and warm start (issue 12, items 1-3)."""

import json
import os
from pathlib import Path
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from omegaconf import OmegaConf

from hwaml import Candidate, TrialPruned, TrialStatus, hookimpl
from hwaml.builtin import AnalyticEvaluator, OptunaSearcher, RandomSearch
from hwaml.config import ConfigError, load_enqueue
from hwaml.executors import LocalExecutor
from hwaml.loop import RunError, SearchLoop
from hwaml.pruning import JOURNAL, STUDY, Reporter
from hwaml.testing import make_context


def _default_sigint() -> None:
    """Popen preexec: the child gets Ctrl-C's default action even when this test runs in
    a shell's background job (which starts with SIGINT ignored, inherited by children,
    and then Python installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _loop(tmp_path, name="run", pruner=None, searcher=None, trials=24, executor=None, enqueue=None, cfg=None, steps=8, **ev):
    evaluator = AnalyticEvaluator(fidelity_steps=steps, **ev)
    return SearchLoop(
        {"searcher": searcher or RandomSearch(), "evaluator": evaluator},
        tmp_path / name,
        objectives={"accuracy": "max"},
        budget_trials=trials,
        seed=3,
        pruner=pruner,
        executor=executor,
        enqueue=enqueue,
        cfg=cfg,
    )


def _run(loop):
    try:
        return loop.run()
    finally:
        loop.close()


def test_without_a_pruner_the_history_is_stored_and_nothing_is_pruned(tmp_path):
    res = _run(_loop(tmp_path, trials=6))
    assert all(t.status == TrialStatus.COMPLETE for t in res.trials)
    for t in res.trials:
        hist = t.info["intermediate"]
        assert [s for s, _ in hist] == list(range(8))
        # the last intermediate value is the trial's final objective
        assert hist[-1][1] == pytest.approx(t.metrics["accuracy"])
    assert not (tmp_path / "run" / JOURNAL).exists()


@pytest.mark.parametrize("pruner", [optuna.pruners.MedianPruner(n_startup_trials=4), optuna.pruners.SuccessiveHalvingPruner(), optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8)])
def test_optuna_pruners_stop_trials_and_the_record_keeps_their_history(tmp_path, pruner):
    res = _run(_loop(tmp_path, pruner=pruner, trials=24))
    pruned = [t for t in res.trials if t.status == TrialStatus.PRUNED]
    complete = [t for t in res.trials if t.status == TrialStatus.COMPLETE]
    assert pruned and complete
    for t in pruned:
        hist = t.info["intermediate"]
        assert len(hist) < 8  # stopped before the last step
        assert t.metrics["accuracy"] == pytest.approx(hist[-1][1])
        assert t.info["pruned"].startswith(f"step {hist[-1][0]}")
    # the best trial is a complete one, and the store reads pruned trials back
    assert res.best.status == TrialStatus.COMPLETE
    from hwaml.store import TrialStore

    with TrialStore(tmp_path / "run") as store:
        assert store.count(TrialStatus.PRUNED) == len(pruned)
        assert [t.number for t in store.finished()] == list(range(24))


def test_a_pruned_trial_is_worse_at_its_step_than_the_median_the_pruner_saw(tmp_path):
    res = _run(_loop(tmp_path, pruner=optuna.pruners.MedianPruner(n_startup_trials=4), trials=20))
    for t in res.trials:
        if t.status != TrialStatus.PRUNED:
            continue
        step, value = t.info["intermediate"][-1]
        earlier = [dict(map(tuple, u.info["intermediate"])) for u in res.trials if u.number < t.number and u.status == TrialStatus.COMPLETE]
        at_step = sorted(max(v for s, v in h.items() if s <= step) for h in earlier)
        import statistics

        assert value < statistics.median(at_step)


def test_the_journal_mirrors_the_store(tmp_path):
    res = _run(_loop(tmp_path, pruner=optuna.pruners.MedianPruner(n_startup_trials=3), trials=12))
    study = optuna.load_study(study_name=STUDY, storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "run" / JOURNAL))))
    by_number = {ft.user_attrs["hwaml_number"]: ft for ft in study.trials}
    assert sorted(by_number) == [t.number for t in res.trials]
    for t in res.trials:
        ft = by_number[t.number]
        assert ft.state.name == {"complete": "COMPLETE", "pruned": "PRUNED"}[t.status]
        assert sorted(ft.intermediate_values.items()) == [tuple(x) for x in t.info["intermediate"]]


def test_tpe_sees_pruned_trials_as_pruned_with_their_values(tmp_path):
    searcher = OptunaSearcher("tpe", sampler_kwargs={"n_startup_trials": 5})
    res = _run(_loop(tmp_path, pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8), searcher=searcher, trials=24))
    n_pruned = sum(t.status == TrialStatus.PRUNED for t in res.trials)
    assert n_pruned > 0
    # every trial but the last batch has been told to TPE's own study
    told = searcher._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,))
    assert len(told) >= n_pruned - 1
    assert all(ft.intermediate_values and ft.value == ft.intermediate_values[max(ft.intermediate_values)] for ft in told)


def test_pruning_works_in_a_process_pool(tmp_path, monkeypatch):
    monkeypatch.setenv("HWAML_LOAD_PLUGINS", "")
    cfg = OmegaConf.create({"evaluator": {"_target_": "hwaml.builtin.AnalyticEvaluator", "fidelity_steps": 8}, "searcher": {"_target_": "hwaml.builtin.RandomSearch"}})
    res = _run(_loop(tmp_path, pruner=optuna.pruners.MedianPruner(n_startup_trials=2), executor=LocalExecutor(workers=2), cfg=cfg, trials=16))
    assert sum(t.status == TrialStatus.PRUNED for t in res.trials) > 0
    assert all(t.status in (TrialStatus.PRUNED, TrialStatus.COMPLETE) for t in res.trials)


def test_reporter_refuses_bad_values():
    r = Reporter(0)
    r.report(0, 0.5)
    with pytest.raises(ValueError, match="already reported"):
        r.report(0, 0.6)
    with pytest.raises(ValueError, match="finite"):
        r.report(1, float("nan"))
    with pytest.raises(TypeError, match="integer"):
        r.report(1.5, 0.1)
    assert r.should_prune() is False and r.history == [(0, 0.5)]


def test_a_nan_report_fails_the_trial_with_the_reason(tmp_path):
    class NanCurve(AnalyticEvaluator):
        def learning_curve(self, cfg, final):
            return [0.5, float("nan")]

    loop = SearchLoop({"searcher": RandomSearch(), "evaluator": NanCurve(fidelity_steps=2)}, tmp_path / "nan", objectives={"accuracy": "max"}, budget_trials=2)
    res = _run(loop)
    assert all(t.status == TrialStatus.FAILED for t in res.trials)
    assert "value at step 1 is nan" in res.trials[0].error
    assert res.trials[0].info["intermediate"] == [[0, 0.5]]


def test_default_context_reports_nothing_and_never_prunes(tmp_path):
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(fidelity_steps=3))
    ctx.report(0, 1.0)
    assert ctx.should_prune() is False
    ev = AnalyticEvaluator(fidelity_steps=3)
    out = ev.evaluate(Candidate(ev.search_space(ctx).sample(ctx.rng)), ctx)
    assert "accuracy" in out.metrics


def test_trial_pruned_is_exported_and_optunas_is_accepted(tmp_path):
    class OptunaStyle(AnalyticEvaluator):
        @hookimpl
        def evaluate(self, candidate, ctx):
            ctx.report(0, 0.2)
            raise optuna.TrialPruned()

    res = _run(SearchLoop({"searcher": RandomSearch(), "evaluator": OptunaStyle()}, tmp_path / "o", objectives={"accuracy": "max"}, budget_trials=2))
    assert [t.status for t in res.trials] == [TrialStatus.PRUNED] * 2
    assert issubclass(TrialPruned, Exception)


# -- resume after kill -9 ------------------------------------------------------


def _finished(db):
    try:
        con = sqlite3.connect(db, timeout=1)
        rows = con.execute("SELECT number, status, info FROM trials WHERE status != 'pending' ORDER BY number").fetchall()
        con.close()
        return rows
    except sqlite3.Error:
        return []


def test_pruned_trials_survive_sigkill_and_resume(tmp_path, cli):
    run_dir = tmp_path / "killed"
    args = ["run", "evaluator=analytic", "evaluator.fidelity_steps=6", "evaluator.step_sleep_s=0.01", "pruner=median", "pruner.n_startup_trials=3", "searcher=random", "budget.trials=24", "seed=5", f"hydra.run.dir={run_dir}", "plots=false"]
    proc = subprocess.Popen([sys.executable, "-m", "hwaml.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run_dir / "trials.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and len(_finished(db)) < 10:
        time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _finished(db)
    assert 10 <= len(before) < 24
    assert any(status == "pruned" for _, status, _ in before), "the killed part should hold pruned trials"

    resumed = subprocess.Popen([sys.executable, "-m", "hwaml.cli", *args, "resume=true"], stdout=subprocess.PIPE, stderr=open(tmp_path / "resume.err", "w"), text=True, start_new_session=True)
    try:
        stdout, _ = resumed.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        resumed.send_signal(signal.SIGUSR1)  # hwaml run: every thread's stack to stderr
        time.sleep(3)
        os.killpg(resumed.pid, signal.SIGKILL)
        raise AssertionError("the resumed run did not finish in 300 s; its stacks:\n" + (tmp_path / "resume.err").read_text()[-6000:])
    out = subprocess.CompletedProcess(resumed.args, resumed.returncode, stdout, (tmp_path / "resume.err").read_text())
    assert out.returncode == 0, out.stderr
    assert "pruned" in out.stdout
    after = _finished(db)
    assert after[: len(before)] == before  # nothing finished was lost or changed
    assert [r[0] for r in after] == list(range(24))
    # the journal was rebuilt from the store: one Optuna trial per hwaml trial, no half-reported leftovers
    study = optuna.load_study(study_name=STUDY, storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL))))
    numbers = [ft.user_attrs["hwaml_number"] for ft in study.trials]
    assert sorted(numbers) == list(range(24))
    assert not [ft for ft in study.trials if ft.state == optuna.trial.TrialState.RUNNING]


def test_pruner_config_group_and_a_bad_key(tmp_path, cli):
    out = cli("run", "evaluator=analytic", "pruner=hyperband", "pruner.reduction_facter=2", "budget.trials=2", f"hydra.run.dir={tmp_path / 'r'}")
    assert out.returncode != 0
    assert "reduction_facter" in out.stderr and "pruner" in out.stderr


# -- warm start ------------------------------------------------------------------

KNOWN = {"resolution": 192, "width": 1.25, "blocks": [{"kernel": 7, "expand": 6}] * 4, "lr": 0.003, "optimizer": "adam"}


def test_enqueued_configurations_run_first_and_are_not_rerun_on_resume(tmp_path):
    other = dict(KNOWN, resolution=96)
    res = _run(_loop(tmp_path, trials=5, enqueue=[KNOWN, other], steps=0))
    assert [t.candidate.origin for t in res.trials[:2]] == ["enqueued", "enqueued"]
    assert res.trials[0].config["resolution"] == 192 and res.trials[1].config["resolution"] == 96
    assert all(t.candidate.origin != "enqueued" for t in res.trials[2:])
    # resume with a larger budget: the queue is not run again
    loop = SearchLoop({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator()}, tmp_path / "run", objectives={"accuracy": "max"}, budget_trials=7, seed=3, resume=True, enqueue=[KNOWN, other])
    res2 = _run(loop)
    assert sum(t.candidate.origin == "enqueued" for t in res2.trials) == 2
    assert len(res2.trials) == 7


def test_an_invalid_enqueued_configuration_stops_the_run_before_any_work(tmp_path):
    bad = dict(KNOWN, resolution=100)
    with pytest.raises(RunError, match=r"enqueue\[1\].*resolution"):
        _run(_loop(tmp_path, trials=5, enqueue=[KNOWN, bad]))
    from hwaml.store import TrialStore

    with TrialStore(tmp_path / "run") as store:
        assert store.count() == 0


def test_enqueue_from_json_and_yaml_files(tmp_path):
    j = tmp_path / "known.json"
    j.write_text(json.dumps([KNOWN]))
    assert load_enqueue(str(j)) == [KNOWN]
    y = tmp_path / "known.yaml"
    y.write_text("- resolution: 96\n  width: 0.5\n")
    assert load_enqueue(str(y)) == [{"resolution": 96, "width": 0.5}]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"resolution": 96,')
    with pytest.raises(ConfigError, match="broken.json is not valid JSON"):
        load_enqueue(str(broken))
    with pytest.raises(ConfigError, match="does not exist"):
        load_enqueue(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"enqueue\[0\]"):
        load_enqueue([3])


def test_enqueue_through_the_cli(tmp_path, cli):
    f = tmp_path / "known.json"
    f.write_text(json.dumps([KNOWN]))
    out = cli("run", "evaluator=analytic", f"enqueue={f}", "budget.trials=3", f"hydra.run.dir={tmp_path / 'r'}", "plots=false")
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(tmp_path / "r" / "trials.sqlite")
    first = con.execute("SELECT origin, config FROM trials WHERE number=0").fetchone()
    assert first[0] == "enqueued" and json.loads(first[1])["resolution"] == 192


# -- observers (the observer group; trackers are plugins) --------------------------


def test_observers_see_every_trial_and_the_end_of_the_run(tmp_path, cli):
    log = tmp_path / "events.jsonl"
    out = cli(
        "run", "evaluator=analytic", "evaluator.fidelity_steps=3", "budget.trials=4", "deploy.enabled=true",
        f"+observer={{rec: {{_target_: hwaml.testing.RecordingObserver, path: {log}}}}}",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["number"] for r in rows if r["event"] == "trial"] == [0, 1, 2, 3]
    assert all(len(r["intermediate"]) == 3 for r in rows if r["event"] == "trial")
    end = rows[-1]
    assert end["event"] == "finished" and end["trials"] == 4 and end["stopped"] == "budget"
    assert {"trials.csv", "best.json", "pareto.png"} <= set(end["files"])
    assert any(k.startswith("deploy/analytic/") for k in end["files"])


def test_an_interrupted_run_tells_observers_what_finished(tmp_path):
    log = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwaml.cli", "run", "evaluator=analytic", "evaluator.sleep_s=0.2", "budget.trials=10000",
         f"+observer={{rec: {{_target_: hwaml.testing.RecordingObserver, path: {log}}}}}", f"hydra.run.dir={tmp_path / 'r'}", "plots=false"],
        stdout=open(tmp_path / "run.log", "w"), stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            # a hang after Ctrl-C: hwaml dumps every thread's stack on SIGUSR1; show it
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError("the run did not exit within 60 s of SIGINT; its log and stacks:\n" + (tmp_path / "run.log").read_text()[-6000:]) from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    done = [r for r in rows if r["event"] == "trial"]
    end = rows[-1]
    assert end["event"] == "finished" and end["stopped"] == "interrupted"
    # counted from the store: every finished trial, and the one the interrupt stopped as pending
    assert end["trials"] == len(done) + 1 and end["counts"]["complete"] == len(done) and end["counts"]["pending"] == 1
    assert end["best"] in [r["number"] for r in done]
    assert set(end["files"]) == {"trials.csv", "best.json"} and (tmp_path / "r" / "best.json").exists()


def test_stack_dump_on_sigusr1(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "hwaml.cli", "run", "evaluator=analytic", "evaluator.sleep_s=0.5", "budget.trials=10000", f"hydra.run.dir={tmp_path / 'r'}", "plots=false"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "err.log", "w"), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "r" / "trials.sqlite").exists():
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        assert proc.poll() is None  # the run goes on
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    err = (tmp_path / "err.log").read_text()
    assert "Current thread" in err and "loop.py" in err, err[-2000:]


def test_a_failing_observer_is_a_warning(tmp_path):
    class Broken:
        @hookimpl
        def trial_completed(self, trial, ctx):
            raise RuntimeError("tracker down")

        @hookimpl
        def run_finished(self, summary, ctx):
            raise RuntimeError("tracker down")

    loop = SearchLoop({"searcher": RandomSearch(), "evaluator": AnalyticEvaluator(), "observer.broken": Broken()}, tmp_path / "b", objectives={"accuracy": "max"}, budget_trials=3)
    res = _run(loop)
    loop.finish(None)
    assert len(res.trials) == 3 and all(t.ok for t in res.trials)


# -- measured backends declare it --------------------------------------------------


def test_measured_backends_are_compared_within_their_tolerance():
    import itertools

    from hwaml import CostReport
    from hwaml.testing import BackendContract, measurement_of

    class Timer:
        measured = True
        measurement_rtol = 0.2

        def __init__(self, values):
            self.values = itertools.cycle(values)

        def cost(self, candidate, ctx):
            return CostReport({"latency_ms": next(self.values)}, source="timer")

    contract = BackendContract()
    cand = [Candidate({"x": 1})]
    contract.test_cost_is_deterministic(Timer([1.0, 1.1]), cand, None)  # 10% apart: accepted
    with pytest.raises(AssertionError, match="measurement_rtol=0.2"):
        contract.test_cost_is_deterministic(Timer([1.0, 1.5]), cand, None)

    class Exact(Timer):
        measured = False

    with pytest.raises(AssertionError):
        contract.test_cost_is_deterministic(Exact([1.0, 1.1]), cand, None)
    from hwaml_ofa_nas.backends import HostCpuLatencyBackend, MacsBackend

    assert measurement_of(HostCpuLatencyBackend) == (True, 0.25)
    assert measurement_of(MacsBackend) == (False, 0.1)

    class Bad(Timer):
        measurement_rtol = 3

    with pytest.raises(TypeError, match="measurement_rtol"):
        measurement_of(Bad([1.0]))


def test_rebuild_clears_a_dangling_symlink_lock_of_a_killed_run(tmp_path):
    """Older Optuna's default journal lock is a symlink to the journal: a run killed while
    holding it leaves one behind that dangles once the journal is rebuilt (Path.exists()
    does not see it), and every later acquire would spin forever."""
    import optuna

    from hwaml.pruning import PruningSetup, rebuild_journal

    setup = PruningSetup(optuna.pruners.MedianPruner(), "accuracy", "max", str(tmp_path))
    journal = setup.journal
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text("")
    lock = Path(str(journal) + ".lock")
    os.symlink(journal, lock)  # what JournalFileSymlinkLock.acquire leaves when the holder is killed
    journal.unlink()
    assert lock.is_symlink() and not lock.exists()  # dangling
    done = []
    import threading

    t = threading.Thread(target=lambda: (rebuild_journal(setup, []), done.append(True)), daemon=True)
    t.start()
    t.join(30)
    assert done, "rebuild_journal hung on the stale lock"
    assert not lock.is_symlink()
