"""Fixtures and contract test suites for plugin authors.

Subclass a suite in your plugin's tests and provide the component as a fixture;
every test of the suite then runs against it, so every evaluator, backend and
searcher is held to the same behaviour (the way Hydra tests its launchers)::

    from hwaml.testing import EvaluatorContract

    class TestMyEvaluator(EvaluatorContract):
        @pytest.fixture
        def evaluator(self):
            return MyEvaluator(epochs=1)

Helpers: :func:`make_context` builds a ``RunContext`` for calling hooks directly,
:func:`run_search` runs a short search through the real loop and store.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pytest

from ..loop import RunResult, SearchLoop, step_rng
from ..plugins import build_run_manager, make_plugin_manager
from ..space import SearchSpace
from ..types import Candidate, CostReport, EvalResult, RunContext, Trial, TrialStatus

__all__ = [
    "compose_config",
    "make_context",
    "run_search",
    "EvaluatorContract",
    "BackendContract",
    "SearcherContract",
    "RecordingObserver",
    "measurement_of",
]


class RecordingObserver:
    """An observer that appends one JSON line per event to ``path``
    (``{"event": "trial", "number", "status"}`` / ``{"event": "finished", ...}``):
    for tests of the observer hooks and of ``+observer=...`` composition."""

    def __init__(self, path: str):
        self.path = str(path)

    def _write(self, row: Mapping[str, Any]) -> None:
        import json

        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    from .. import hookimpl as _hookimpl

    @_hookimpl
    def trial_completed(self, trial: Trial, ctx: RunContext) -> None:
        self._write({"event": "trial", "number": trial.number, "status": trial.status, "intermediate": (trial.info or {}).get("intermediate", [])})

    @_hookimpl
    def run_finished(self, summary: Any, ctx: RunContext) -> None:
        self._write({"event": "finished", "trials": summary.trials, "best": summary.best, "stopped": summary.stopped_because, "files": dict(summary.files), "counts": dict(summary.counts)})

    del _hookimpl


def make_context(
    run_dir: Path | str,
    seed: int = 0,
    step: int = 0,
    objectives: Optional[Mapping[str, str]] = None,
    constraints: Optional[Mapping[str, Any]] = None,
    cfg: Any = None,
    evaluator: Any = None,
    backends: Optional[Mapping[str, Any]] = None,
) -> RunContext:
    """A run context for calling hooks directly in tests.

    With ``evaluator`` the context is wired as a run's would be: ``ctx.space`` is
    the evaluator's space and ``ctx.build_model`` calls its ``build_model`` hook
    (so an NN backend can be costed on the evaluator's networks); with
    ``backends`` too, ``ctx.cost_fn`` merges their costs.
    """
    from ..trial import wire_context

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        cfg=cfg,
        run_dir=run_dir,
        seed=seed,
        rng=step_rng(seed, step),
        objectives=dict(objectives or {"accuracy": "max"}),
        constraints=dict(constraints or {}),
    )
    if evaluator is None and not backends:
        return ctx
    comps = {"evaluator": evaluator} if evaluator is not None else {}
    comps.update({f"backend.{k}": v for k, v in (backends or {}).items()})
    pm = build_run_manager(comps, registry=_EmptyRegistry())
    return wire_context(pm, ctx, with_space=evaluator is not None)


def compose_config(overrides: List[str]) -> Any:
    """Compose the run config exactly as ``hwaml run`` would (schema, plugins'
    search paths), without running anything::

        cfg = compose_config(["evaluator=my_eval", "backend=[my_cost]"])
        check_component(cfg.backend.my_cost, "backend.my_cost")
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from ..config import register_schema
    from ..searchpath import register_search_path_plugin

    register_schema()
    register_search_path_plugin()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="hwaml_conf", version_base="1.3"):
            return compose("config", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def run_search(
    components: Mapping[str, Any],
    run_dir: Path | str,
    trials: int = 10,
    objectives: Optional[Mapping[str, str]] = None,
    constraints: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    resume: bool = False,
    registry: Any = None,
) -> RunResult:
    """Run a short search through the real loop and SQLite store.

    ``registry`` defaults to the installed plugins (their observers see the run);
    pass ``hwaml.plugins.Registry(hwaml.plugins.make_plugin_manager())`` to run
    with only ``components``.
    """
    evaluator = components.get("evaluator")
    objectives = dict(objectives or getattr(evaluator, "default_objectives", None) or {"accuracy": "max"})
    loop = SearchLoop(
        components=components,
        run_dir=run_dir,
        objectives=objectives,
        constraints=constraints,
        budget_trials=trials,
        seed=seed,
        resume=resume,
        registry=registry,
    )
    try:
        return loop.run()
    finally:
        loop.close()


def _finite_metrics(metrics: Mapping[str, Any], what: str) -> None:
    assert metrics, f"{what} returned no metrics"
    for k, v in metrics.items():
        assert isinstance(k, str), f"{what}: metric name {k!r} is not a string"
        assert isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool), f"{what}: metric {k}={v!r} is not a number"
        assert math.isfinite(float(v)), f"{what}: metric {k}={v!r} is not finite"


class EvaluatorContract:
    """Every evaluator: a valid space, finite metrics, its default objectives reported.

    Provide an ``evaluator`` fixture. Override ``n_candidates`` to evaluate more or
    fewer sampled candidates (default 2).
    """

    n_candidates = 2

    @pytest.fixture
    def evaluator(self) -> Any:  # pragma: no cover - must be overridden
        raise NotImplementedError("provide an `evaluator` fixture")

    @pytest.fixture
    def contract_ctx(self, tmp_path: Path) -> RunContext:
        return make_context(tmp_path / "run")

    def test_registers_with_the_hook_contract(self, evaluator: Any) -> None:
        _assert_registers_statically(evaluator)
        pm = build_run_manager({"evaluator": evaluator}, registry=_EmptyRegistry())
        assert pm.hook.search_space.get_hookimpls(), "the evaluator must implement search_space"
        assert pm.hook.evaluate.get_hookimpls(), "the evaluator must implement evaluate"
        assert pm.hook.metric_names.get_hookimpls(), "the evaluator must declare its metrics (metric_names)"

    def test_declared_metrics_cover_what_it_reports(self, evaluator: Any, contract_ctx: RunContext) -> None:
        declared = set(evaluator.metric_names(ctx=contract_ctx) or [])
        for name in getattr(evaluator, "default_objectives", {}) or {}:
            assert name in declared, f"default objective {name!r} is not among the declared metrics {sorted(declared)}"
        space = evaluator.search_space(ctx=contract_ctx)
        res = evaluator.evaluate(candidate=Candidate(space.sample(np.random.default_rng(7)), number=0), ctx=contract_ctx)
        assert set(res.metrics) <= declared, f"evaluate reported {sorted(set(res.metrics) - declared)} that metric_names does not declare"

    def test_search_space_samples_validate_and_encode(self, evaluator: Any, contract_ctx: RunContext) -> None:
        space = evaluator.search_space(ctx=contract_ctx)
        assert isinstance(space, SearchSpace)
        rng = np.random.default_rng(0)
        for _ in range(5):
            cfg = space.sample(rng)
            assert space.validate(cfg) == cfg
            vec = space.encode(cfg)
            assert vec.shape == (space.size,) and np.all(np.isfinite(vec))
            child = space.mutate(cfg, rng, 0.5)
            space.validate(child)

    def test_search_space_replays_through_optuna(self, evaluator: Any, contract_ctx: RunContext) -> None:
        # Optuna searchers rebuild a stored configuration from space.flatten (resume, the
        # journal mirror): suggest must ask for exactly flatten's names and give the config back
        from ..builtin.searchers import _ReplayTrial

        space = evaluator.search_space(ctx=contract_ctx)
        rng = np.random.default_rng(2)
        for _ in range(20):
            cfg = space.sample(rng)
            flat = space.flatten(cfg)
            replay = _ReplayTrial(flat)
            try:
                again = space.suggest(replay)
            except KeyError as exc:
                raise AssertionError(f"space.suggest asks for {exc} that space.flatten does not give (flatten: {sorted(flat)})") from None
            assert again == cfg, "space.suggest replayed from space.flatten gives another configuration"
            assert set(replay.params) == set(flat), f"space.flatten gives names suggest never asks for: {sorted(set(flat) - set(replay.params))}"

    def test_evaluate_returns_finite_metrics(self, evaluator: Any, contract_ctx: RunContext) -> None:
        space = evaluator.search_space(ctx=contract_ctx)
        rng = np.random.default_rng(1)
        for i in range(self.n_candidates):
            cand = Candidate(space.sample(rng), number=i)
            res = evaluator.evaluate(candidate=cand, ctx=contract_ctx)
            assert isinstance(res, EvalResult)
            _finite_metrics(res.metrics, f"{type(evaluator).__name__}.evaluate")
            for name in getattr(evaluator, "default_objectives", {}) or {}:
                assert name in res.metrics, f"default objective {name!r} not in evaluate's metrics {sorted(res.metrics)}"


class BackendContract:
    """Every cost backend: a CostReport with finite metrics, a source, determinism.

    Provide ``backend`` and ``candidates`` (a list of :class:`Candidate`) fixtures.
    """

    @pytest.fixture
    def backend(self) -> Any:  # pragma: no cover
        raise NotImplementedError("provide a `backend` fixture")

    @pytest.fixture
    def candidates(self) -> List[Candidate]:  # pragma: no cover
        raise NotImplementedError("provide a `candidates` fixture (a list of Candidate)")

    @pytest.fixture
    def contract_ctx(self, tmp_path: Path) -> RunContext:
        return make_context(tmp_path / "run")

    def test_registers_with_the_hook_contract(self, backend: Any) -> None:
        _assert_registers_statically(backend)
        pm = build_run_manager({"backend.x": backend}, registry=_EmptyRegistry())
        assert pm.hook.cost.get_hookimpls(), "a backend must implement cost"
        assert pm.hook.metric_names.get_hookimpls(), "a backend must declare its metrics (metric_names)"

    def test_declared_metrics_cover_what_it_reports(self, backend: Any, candidates: List[Candidate], contract_ctx: RunContext) -> None:
        declared = set(backend.metric_names(ctx=contract_ctx) or [])
        for cand in candidates:
            rep = backend.cost(candidate=cand, ctx=contract_ctx)
            if rep is not None:
                assert set(rep.metrics) <= declared, f"cost reported {sorted(set(rep.metrics) - declared)} that metric_names does not declare"

    def test_cost_reports_finite_metrics_with_source(self, backend: Any, candidates: List[Candidate], contract_ctx: RunContext) -> None:
        assert candidates, "the candidates fixture is empty"
        for cand in candidates:
            rep = backend.cost(candidate=cand, ctx=contract_ctx)
            assert isinstance(rep, CostReport)
            _finite_metrics(rep.metrics, f"{type(backend).__name__}.cost")
            assert rep.source, "CostReport.source should name the backend"
            assert rep.feasible in (None, True, False)

    def test_cost_is_deterministic(self, backend: Any, candidates: List[Candidate], contract_ctx: RunContext) -> None:
        """The same candidate costs the same; a backend that measures (declares
        ``measured = True``) within its declared ``measurement_rtol``."""
        a = backend.cost(candidate=candidates[0], ctx=contract_ctx)
        b = backend.cost(candidate=candidates[0], ctx=contract_ctx)
        measured, rtol = measurement_of(backend)
        if not measured:
            assert dict(a.metrics) == dict(b.metrics)
            return
        assert set(a.metrics) == set(b.metrics)
        for k in a.metrics:
            x, y = float(a.metrics[k]), float(b.metrics[k])
            assert abs(x - y) <= rtol * max(abs(x), abs(y)), f"{k}: two measurements {x} and {y} differ by more than measurement_rtol={rtol}"


def measurement_of(backend: Any) -> tuple:
    """``(measured, rtol)`` a backend declares as class attributes: ``measured =
    True`` for a backend that times or measures (host latency, memory), with
    ``measurement_rtol`` the relative difference two measurements of one
    candidate may show (default 0.1). Read statically: declaring never runs code."""
    import inspect

    measured = inspect.getattr_static(backend, "measured", False)
    rtol = inspect.getattr_static(backend, "measurement_rtol", 0.1)
    if not isinstance(measured, bool):
        raise TypeError(f"{type(backend).__name__}.measured must be a bool class attribute, got {measured!r}")
    if not isinstance(rtol, (int, float)) or not 0 <= rtol < 1:
        raise TypeError(f"{type(backend).__name__}.measurement_rtol must be a number in [0, 1), got {rtol!r}")
    return measured, float(rtol)


class SearcherContract:
    """Every searcher: valid proposals, at most ``n``, reproducible, resumable.

    Provide a ``searcher_factory`` fixture: a zero-argument callable returning a
    fresh searcher (reproducibility and resume need new instances). By default the
    suite searches the built-in analytic ``nas_toy`` space; override the
    ``contract_evaluator`` fixture to use another evaluator.
    """

    trials = 12

    @pytest.fixture
    def searcher_factory(self) -> Any:  # pragma: no cover
        raise NotImplementedError("provide a `searcher_factory` fixture (a callable returning a new searcher)")

    @pytest.fixture
    def contract_evaluator(self) -> Any:
        from ..builtin.analytic import AnalyticEvaluator

        return AnalyticEvaluator("nas_toy")

    def _run(self, factory: Any, evaluator: Any, run_dir: Path, seed: int = 0, trials: Optional[int] = None, resume: bool = False) -> RunResult:
        return run_search({"searcher": factory(), "evaluator": evaluator}, run_dir, trials=trials or self.trials, seed=seed, resume=resume)

    def test_registers_with_the_hook_contract(self, searcher_factory: Any) -> None:
        searcher = searcher_factory()
        _assert_registers_statically(searcher)
        pm = build_run_manager({"searcher": searcher}, registry=_EmptyRegistry())
        assert pm.hook.propose.get_hookimpls(), "a searcher must implement propose"

    def test_proposals_are_valid_and_at_most_n(self, searcher_factory: Any, contract_evaluator: Any, tmp_path: Path) -> None:
        ctx = make_context(tmp_path, objectives=getattr(contract_evaluator, "default_objectives", None))
        space = contract_evaluator.search_space(ctx=ctx)
        cands = searcher_factory().propose(space=space, history=[], n=3, ctx=ctx)
        assert 1 <= len(cands) <= 3
        for c in cands:
            space.validate(c.config if isinstance(c, Candidate) else c)

    def test_runs_through_the_loop(self, searcher_factory: Any, contract_evaluator: Any, tmp_path: Path) -> None:
        res = self._run(searcher_factory, contract_evaluator, tmp_path / "a")
        assert len(res.trials) == self.trials
        assert [t.number for t in res.trials] == list(range(self.trials))
        assert res.best is not None

    def test_same_seed_same_history(self, searcher_factory: Any, contract_evaluator: Any, tmp_path: Path) -> None:
        a = self._run(searcher_factory, contract_evaluator, tmp_path / "a", seed=3)
        b = self._run(searcher_factory, contract_evaluator, tmp_path / "b", seed=3)
        assert [dict(t.config) for t in a.trials] == [dict(t.config) for t in b.trials]

    def test_resume_continues_the_history(self, searcher_factory: Any, contract_evaluator: Any, tmp_path: Path) -> None:
        full = self._run(searcher_factory, contract_evaluator, tmp_path / "full", seed=5)
        half = self._run(searcher_factory, contract_evaluator, tmp_path / "half", seed=5, trials=self.trials // 2)
        assert len(half.trials) == self.trials // 2
        resumed = self._run(searcher_factory, contract_evaluator, tmp_path / "half", seed=5, resume=True)
        assert len(resumed.trials) == self.trials
        assert [dict(t.config) for t in resumed.trials] == [dict(t.config) for t in full.trials]


def _assert_registers_statically(component: Any) -> None:
    """Registration must not run the component's code: no property of it may be
    evaluated by hook discovery (pluggy < 1.7 used ``getattr`` on every attribute),
    and no property may raise or do work."""
    import inspect

    for klass in type(component).__mro__:
        for name, attr in vars(klass).items():
            if isinstance(attr, property):
                raise AssertionError(
                    f"{type(component).__name__}.{name} is a property; components keep lazy state behind explicit methods "
                    f"(a property runs when a plugin manager or a debugger inspects the object)"
                )
    # registering under the oldest discovery rule (getattr on every attribute) must not fail either
    for name in dir(component):
        inspect.getattr_static(component, name)


class _EmptyRegistry:
    """A registry with no entry-point plugins (contract tests check one component)."""

    def __init__(self) -> None:
        self.pm = make_plugin_manager()
