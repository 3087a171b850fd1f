"""Small frozen dataclasses that travel through the hooks.

Everything a hook receives or returns is one of these (or a ``SearchSpace``).
They are deliberately plain: mappings of names to floats, paths as strings, so
that a trial can be stored in SQLite, pickled to a worker process or sent to a
Ray actor without custom serialisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Tuple

__all__ = [
    "BuiltModel",
    "Candidate",
    "EvalResult",
    "CostReport",
    "DeployResult",
    "Trial",
    "RunContext",
    "RunSummary",
    "TrialStatus",
]


class TrialStatus:
    """The states a trial can be in (plain strings so they store as text)."""

    PENDING = "pending"  #: proposed and recorded, not finished (a killed run re-runs it)
    COMPLETE = "complete"  #: cost and evaluation finished, all metrics finite
    INFEASIBLE = "infeasible"  #: a constraint was violated; not evaluated
    FAILED = "failed"  #: an exception or a NaN metric; traceback kept in ``error``
    PRUNED = "pruned"  #: stopped early by the run's pruner; last reported value and history kept

    ALL = (PENDING, COMPLETE, INFEASIBLE, FAILED, PRUNED)
    FINISHED = (COMPLETE, INFEASIBLE, FAILED, PRUNED)


@dataclass(frozen=True)
class Candidate:
    """One point of the search space, as proposed by a searcher.

    ``config`` is a nested mapping of plain Python values (ints, floats, strings,
    lists of mappings for per-block choices) that ``SearchSpace.validate`` accepts.
    ``number`` is the trial number the loop gives it when it is recorded; a searcher
    leaves it ``None``. ``origin`` says how it was made (``"random"``,
    ``"mutation"``, ``"crossover"``, ``"tpe"`` ...) and ``meta`` holds anything a
    searcher wants back in the history (for example the parent trial numbers).
    """

    config: Mapping[str, Any]
    number: Optional[int] = None
    origin: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def with_number(self, number: int) -> "Candidate":
        return Candidate(dict(self.config), number, self.origin, dict(self.meta))


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator measured for one candidate.

    ``metrics`` maps names (``accuracy``, ``fom``, ``perplexity`` ...) to floats;
    ``artifacts`` maps names to file paths (a checkpoint, a plot); ``info`` is free
    JSON-able detail stored with the trial.
    """

    metrics: Mapping[str, float]
    artifacts: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CostReport:
    """What one hardware backend predicts or measures for one candidate.

    ``metrics`` holds costs such as ``latency_ms``, ``energy_mj``,
    ``peak_sram_kb``, ``flash_kb``, ``dram_bytes``, ``area_mm2``, ``power_mw``.
    ``source`` names the backend (used in error messages when two backends report
    the same metric). ``feasible`` is the backend's own verdict (for example "the
    model does not fit this MCU"); ``None`` means the backend has no opinion and
    only the run's ``constraints`` decide.
    """

    metrics: Mapping[str, float]
    source: str = ""
    feasible: Optional[bool] = None
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployResult:
    """What a deploy step produced: files, whether it worked, and measurements."""

    artifacts: Mapping[str, str]
    ok: bool = True
    metrics: Mapping[str, float] = field(default_factory=dict)
    message: str = ""
    source: str = ""


@dataclass(frozen=True)
class Trial:
    """One finished (or pending) trial as the store records it."""

    number: int
    candidate: Candidate
    status: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    error: Optional[str] = None
    duration_s: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Mapping[str, Any]:
        return self.candidate.config

    @property
    def ok(self) -> bool:
        return self.status == TrialStatus.COMPLETE

    @property
    def artifacts(self) -> Mapping[str, str]:
        """The files the evaluator listed in its ``EvalResult.artifacts`` (name -> path)."""
        return dict((self.info or {}).get("artifacts", {}) or {})

    def value(self, name: str) -> float:
        """A metric by name from the evaluation or the cost report (NaN if absent)."""
        if name in self.metrics:
            return float(self.metrics[name])
        if name in self.cost:
            return float(self.cost[name])
        return math.nan


@dataclass(frozen=True)
class RunSummary:
    """The end of a run, as the ``run_finished`` hook sees it.

    ``counts`` maps each status to its number of trials; ``best`` is the best
    trial's number (``None``: no complete trial); ``pareto`` the front's numbers;
    ``files`` maps names to paths of what the run wrote (``trials.csv``,
    ``best.json``, ``pareto.png``, and ``deploy/<source>/<name>`` for each deploy
    artifact); ``stopped_because`` is ``budget``, ``searcher finished``,
    ``interrupted``, ``all trials failed``, ``deploy failed`` or ``error`` (a
    configuration or plugin error stopped it).
    """

    run_dir: str
    trials: int
    counts: Mapping[str, int] = field(default_factory=dict)
    best: Optional[int] = None
    pareto: Tuple[int, ...] = ()
    stopped_because: str = ""
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltModel:
    """A candidate as a network, answered by the NN evaluator's ``build_model`` hook.

    Every NN cost backend (TinyEngine's MCU profiles, latency tables, MACs
    counters) costs ``module`` and nothing else, so any NN evaluator composes
    with any NN backend.

    ``module`` is a ``torch.nn.Module`` in eval mode taking one batch of
    ``input_shape`` (``(C, H, W)`` for images, without the batch dimension).
    ``trained`` says whether ``module`` holds the trial's trained weights (true
    only when ``build_model`` was given a finished trial with a checkpoint).
    ``calibration`` is a float tensor of representative inputs (for int8
    calibration); ``test_data`` an ``(inputs, labels)`` pair a deploy step can
    score the deployed model on. ``macs`` is the evaluator's own count of
    multiply-accumulates (what backends' counts are checked against), ``None``
    if it has none. ``input_dtype`` is the torch dtype name of the input
    (``"float32"`` for images; ``"int64"`` for a language model's token ids), so
    a backend that costs only image networks refuses others with a clear error.
    """

    module: Any
    input_shape: Tuple[int, ...]
    trained: bool = False
    calibration: Any = None
    test_data: Any = None
    macs: Optional[float] = None
    source: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    input_dtype: str = "float32"


def _report_outside_a_trial(step: int, value: float) -> None:
    """``ctx.report`` of a context that is not running a trial: nothing to record."""


def _never_prune() -> bool:
    return False


@dataclass(frozen=True)
class RunContext:
    """Shared state of one run, passed to every hook as ``ctx``.

    The dataclass is frozen (hooks cannot rebind its fields) but ``rng``,
    ``store`` and ``logger`` are live objects. ``objectives`` maps metric names to
    ``"max"`` or ``"min"``; ``constraints`` maps metric names to upper bounds
    (or ``{"min": x}`` / ``{"max": x}`` mappings).
    """

    cfg: Any
    run_dir: Path
    seed: int
    rng: Any
    store: Any = None
    logger: Any = None
    device: str = "cpu"
    objectives: Mapping[str, str] = field(default_factory=dict)
    constraints: Mapping[str, Any] = field(default_factory=dict)
    in_worker: bool = False
    #: ``cost_fn(candidate) -> CostReport`` merges every backend's cost (its
    #: ``metrics`` and the backends' joint ``feasible`` verdict); a searcher uses
    #: it to reject infeasible children before proposing them.
    cost_fn: Optional[Callable[["Candidate"], "CostReport"]] = None
    #: ``build_model(candidate, trial=None) -> BuiltModel``: the evaluator's
    #: network for a candidate (``trial`` given: with that trial's trained
    #: weights). Set by the loop; ``None`` when the run's evaluator builds no
    #: network. Backends call it instead of building the network themselves.
    build_model: Optional[Callable[..., "BuiltModel"]] = None
    #: the run's search space (set once ``search_space`` has answered)
    space: Any = None
    #: CPU threads one trial may use (the executor divides the cores between
    #: its workers); components that start thread pools of their own honour it.
    threads: Optional[int] = None
    #: ``report(step, value)``: an intermediate value of the run's first
    #: objective inside ``evaluate`` (per epoch ...), stored with the trial and
    #: seen by the pruner; bound per trial by the loop (:mod:`hwaml.pruning`)
    report: Callable[[int, float], None] = _report_outside_a_trial
    #: ``should_prune() -> bool``: the run's pruner wants this trial stopped
    #: (then raise :class:`hwaml.TrialPruned`); always false without a pruner
    should_prune: Callable[[], bool] = _never_prune
    #: the run's :class:`hwaml.pruning.PruningSetup` (``None``: no pruner)
    pruning: Any = None
