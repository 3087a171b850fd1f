"""The journal mirror: what optuna-dashboard will read, read back with Optuna itself."""

import json
import signal
import sqlite3

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hwaml import Candidate, RunSummary, Trial
from hwaml.builtin import AnalyticEvaluator
from hwaml.cli import main as hwaml_main
from hwaml.testing import make_context
from hwaml_optuna_dashboard import OptunaJournalObserver
from hwaml_optuna_dashboard.journal import constraint_values, open_storage


def _default_sigint() -> None:
    """Popen preexec: the child gets Ctrl-C's default action even when this test runs in
    a shell's background job (which starts with SIGINT ignored, inherited by children,
    and then Python installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _load(path):
    (summary,) = optuna.get_all_study_summaries(open_storage(path))
    return optuna.load_study(study_name=summary.study_name, storage=open_storage(path))


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_trials_states_distributions_constraints_and_intermediate_values(tmp_path, writer):
    ev = AnalyticEvaluator()
    ctx = make_context(tmp_path, evaluator=ev, objectives={"accuracy": "max", "latency_ms": "min"}, constraints={"params_k": 2000, "latency_ms": {"min": 1.0}})
    rng = np.random.default_rng(0)
    configs = [ctx.space.sample(rng) for _ in range(4)]
    trials = [
        Trial(0, Candidate(configs[0], 0, "random"), "complete", {"accuracy": 0.8}, {"latency_ms": 5.0, "params_k": 1500.0}, None, 0.1, {"intermediate": [[0, 0.5], [1, 0.8]]}),
        Trial(1, Candidate(configs[1], 1, "random"), "infeasible", {}, {"latency_ms": 5.0, "params_k": 2600.0}, None, 0.0, {}),
        Trial(2, Candidate(configs[2], 2, "tpe"), "failed", {}, {"latency_ms": 3.0, "params_k": 100.0}, "Traceback\nValueError: diverged", 0.2, {}),
        Trial(3, Candidate(configs[3], 3, "tpe"), "pruned", {"accuracy": 0.3}, {"latency_ms": 0.5, "params_k": 100.0}, None, 0.1, {"intermediate": [[0, 0.3]]}),
    ]
    obs = OptunaJournalObserver(study_name="mirror", writer=writer)
    for t in trials:
        obs.trial_completed(t, ctx)
    obs.run_finished(RunSummary(str(tmp_path), 4, {"complete": 1}, 0, (0,), "budget", {}), ctx)
    assert obs.queue.handled == 5 and obs.queue.failed == 0
    assert not (tmp_path / "pruning.journal").exists()
    study = _load(tmp_path / "optuna.journal")
    assert study.study_name == "mirror"
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["accuracy", "latency_ms"]
    got = study.get_trials(deepcopy=False)
    assert [t.state for t in got] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED]
    assert [t.user_attrs["hwaml_status"] for t in got] == ["complete", "infeasible", "failed", "pruned"]
    assert got[0].values == [0.8, 5.0] and got[0].intermediate_values == {0: 0.5, 1: 0.8}
    assert got[3].values is None and got[3].intermediate_values == {0: 0.3}  # two objectives: Optuna keeps no value for a pruned trial
    assert got[2].user_attrs["error"] == "ValueError: diverged"
    assert got[1].user_attrs["cost.params_k"] == 2600.0
    # Optuna's constraints attribute: value <= 0 is satisfied (params_k <= 2000, latency_ms >= 1)
    assert got[0].system_attrs["constraints"] == [-500.0, -4.0]
    assert got[1].system_attrs["constraints"] == [600.0, -4.0]
    assert got[3].system_attrs["constraints"] == [-1900.0, 0.5]
    # the space's own distributions, as Optuna's define-by-run suggest would record them
    flat = ctx.space.flatten(configs[0])
    assert got[0].params == flat
    dist = got[0].distributions
    assert isinstance(dist["resolution"], CategoricalDistribution) and isinstance(dist["blocks.length"], CategoricalDistribution)
    assert isinstance(dist["lr"], FloatDistribution) and dist["lr"].log
    assert all(isinstance(d, (CategoricalDistribution, FloatDistribution, IntDistribution)) for d in dist.values())
    assert study.user_attrs["stopped_because"] == "budget" and study.user_attrs["constraints"] == {"params_k": {"max": 2000.0}, "latency_ms": {"min": 1.0}}
    assert len(study.best_trials) == 1


def test_single_objective_pruned_trials_keep_their_last_value(tmp_path):
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(), objectives={"accuracy": "max"})
    cfg = ctx.space.sample(np.random.default_rng(1))
    obs = OptunaJournalObserver(path=str(tmp_path / "elsewhere" / "mirror.journal"))
    obs.trial_completed(Trial(0, Candidate(cfg, 0), "pruned", {"accuracy": 0.4}, {}, None, 0.1, {"intermediate": [[0, 0.2], [3, 0.4]]}), ctx)
    obs.run_finished(RunSummary(str(tmp_path), 1, {}, None, (), "budget", {}), ctx)
    (t,) = _load(tmp_path / "elsewhere" / "mirror.journal").trials
    assert t.state == TrialState.PRUNED and t.value == 0.4 and t.intermediate_values == {0: 0.2, 3: 0.4}


def test_constraint_values_follow_optunas_sign_convention():
    # a <= 5; 1 <= b <= 4 (bounds in the order given: max, then min)
    assert constraint_values({"a": 3.0, "b": 2.0}, {"a": 5, "b": {"min": 1, "max": 4}}) == [-2.0, -2.0, -1.0]
    assert constraint_values({"a": 6.0, "b": 0.5}, {"a": 5, "b": {"min": 1}}) == [1.0, 0.5]
    assert constraint_values({"a": 3.0}, {"b": 1}) is None


def test_the_core_pruner_journal_is_not_ours():
    with pytest.raises(ValueError, match="pruning.journal is the core's"):
        OptunaJournalObserver(path="pruning.journal")


def test_hwaml_run_mirrors_every_stored_trial(tmp_path, cli):
    run_dir = tmp_path / "r"
    out = cli(
        "run", "evaluator=analytic", "evaluator.fidelity_steps=4", "pruner=median", "searcher=optuna_tpe", "budget.trials=10",
        "+observer=optuna_journal", "name=mirror", f"hydra.run.dir={run_dir}", "plots=false", cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(run_dir / "trials.sqlite")
    stored = {n: (s, json.loads(i).get("intermediate", [])) for n, s, i in con.execute("SELECT number, status, info FROM trials")}
    study = _load(run_dir / "optuna.journal")
    assert study.study_name == "mirror/r" and study.direction == optuna.study.StudyDirection.MAXIMIZE
    mirrored = {t.user_attrs["hwaml_trial"]: t for t in study.trials}
    assert set(mirrored) == set(stored)
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL, "infeasible": TrialState.FAIL}
    for n, (status, inter) in stored.items():
        assert mirrored[n].state == state[status]
        assert mirrored[n].intermediate_values == {int(s): v for s, v in inter}
    assert any(s == "pruned" for s, _ in stored.values()), "the median pruner pruned nothing: the test shows no pruned state"


def test_dashboard_command_errors_are_clear(tmp_path, capsys):
    assert hwaml_main(["dashboard", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert hwaml_main(["dashboard", str(tmp_path)]) == 2
    assert "+observer=optuna_journal" in capsys.readouterr().err


def test_batched_records_read_back_as_add_trial_would_write_them(tmp_path):
    """The mirror appends a batch of CREATE_TRIAL records in one write; Optuna reads them
    back exactly as the trials ``study.add_trial`` writes (guards against a journal format change)."""
    ctx = make_context(tmp_path, evaluator=AnalyticEvaluator(), objectives={"accuracy": "max"}, constraints={"latency_ms": 10})
    rng = np.random.default_rng(3)
    trials = [
        Trial(0, Candidate(ctx.space.sample(rng), 0, "random"), "complete", {"accuracy": 0.7}, {"latency_ms": 4.0}, None, 0.2, {"intermediate": [[0, 0.5], [1, 0.7]]}),
        Trial(1, Candidate(ctx.space.sample(rng), 1, "random"), "pruned", {"accuracy": 0.1}, {"latency_ms": 12.0}, None, 0.1, {"intermediate": [[0, 0.1]]}),
        Trial(2, Candidate(ctx.space.sample(rng), 2, "random"), "failed", {}, {}, "boom", 0.1, {}),
    ]
    obs = OptunaJournalObserver(path="batched.journal", study_name="s")
    for t in trials:
        obs.trial_completed(t, ctx)
    obs.run_finished(RunSummary(str(tmp_path), 3, {}, None, (), "budget", {}), ctx)
    reference = optuna.create_study(storage=open_storage(tmp_path / "reference.journal"), study_name="s", direction="maximize")
    from hwaml_optuna_dashboard.journal import frozen_trial

    for t in trials:
        reference.add_trial(frozen_trial(t, ctx))
    got = optuna.load_study(study_name="s", storage=open_storage(tmp_path / "batched.journal")).trials
    want = reference.trials
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert (g.number, g.state, g.values, g.params, g.distributions, g.user_attrs, g.intermediate_values) == (w.number, w.state, w.values, w.params, w.distributions, w.user_attrs, w.intermediate_values)
        assert g.system_attrs == w.system_attrs and g.datetime_complete is not None


def test_known_parameters_are_answered_without_a_replay_and_match_one():
    """After the first configuration with a parameter, later ones are mirrored from the
    recorded distributions (no replay through the space): the same params and
    distributions a replay gives, for conditional groups, repeated blocks and
    categorical choices Optuna only takes as text."""
    from hwaml.space import Categorical, Float, Group, Integer, Repeated, SearchSpace
    from hwaml_optuna_dashboard.journal import _Distributions, params_and_distributions

    space = SearchSpace([
        Categorical("opt", ["sgd", "adam"]),
        Group("sgd", [Float("momentum", 0.0, 0.99)], when={"opt": ["sgd"]}),
        Categorical("shape", [(1, 2), (3, 4)]),
        Repeated("blocks", [Integer("k", 3, 7, step=2), Categorical("e", [3, 6])], lengths=[1, 2, 3]),
    ])
    rng = np.random.default_rng(0)
    seen_fast = 0
    for _ in range(60):
        cfg = space.sample(rng)
        replay = _Distributions(space.flatten(cfg), {})
        space.suggest(replay)
        flat = space.flatten(cfg)
        from hwaml_optuna_dashboard import journal

        entry = journal._BY_NAME.get(id(space))
        seen_fast += entry is not None and all(k in entry[1] for k in flat)
        params, dists = params_and_distributions(cfg, space)
        assert params == replay.params and dists == replay.distributions
    assert seen_fast > 30  # most configurations took the recorded path
    assert params_and_distributions(cfg, space)[0]["shape"] in ("(1, 2)", "(3, 4)")


def test_the_per_space_record_keeps_only_the_recent_spaces():
    from hwaml.space import Categorical, Integer, SearchSpace
    from hwaml_optuna_dashboard import journal

    spaces = [SearchSpace([Integer("k", 1, 9), Categorical("c", ["a", "b"])]) for _ in range(3 * journal._BY_NAME_MAX)]
    rng = np.random.default_rng(0)
    for space in spaces:
        journal.params_and_distributions(space.sample(rng), space)
    assert len(journal._BY_NAME) == journal._BY_NAME_MAX  # a long process running many searches does not grow it
    assert all(journal._BY_NAME[id(s)][0] is s for s in spaces[-journal._BY_NAME_MAX:])  # the most recent ones
    params, _ = journal.params_and_distributions({"k": 4, "c": "b"}, spaces[0])  # an evicted space is replayed again
    assert params == {"k": 4, "c": "b"} and journal._BY_NAME[id(spaces[0])][0] is spaces[0]


def test_ctrl_c_with_a_writer_process_closes_the_mirror_with_its_counts(tmp_path):
    """Ctrl-C reaches the whole process group, the writer process included: it ignores it,
    and the search's own interrupt handling flushes the mirror and closes it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "live"
    journal = run_dir / "optuna.journal"
    search = subprocess.Popen(
        [sys.executable, "-m", "hwaml.cli", "run", "evaluator=analytic", "evaluator.sleep_s=0.05", "searcher=random", "budget.trials=100000",
         "+observer=optuna_journal", "observer.optuna_journal.writer=process", "observer.optuna_journal.batch_window_s=0.05",
         "name=live", f"hydra.run.dir={run_dir}", "plots=false"],
        cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"}, stdout=open(tmp_path / "search.log", "w"), stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and journal.read_text().count('"op_code":4') >= 5):  # trials mirrored by the writer process
            assert search.poll() is None and time.monotonic() < deadline, (tmp_path / "search.log").read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(search.pid, signal.SIGINT)
        search.wait(120)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
            search.wait(10)
    log = (tmp_path / "search.log").read_text()
    assert search.returncode != 0 and "KeyboardInterrupt" in log, log[-3000:]
    study = _load(journal)
    assert study.user_attrs["stopped_because"] == "interrupted"
    counts = study.user_attrs["counts"]
    finished = sum(counts.values()) - counts.get("pending", 0)
    assert finished == len(study.trials) >= 5  # every finished trial reached the journal through the writer
    assert "not recorded" not in log
