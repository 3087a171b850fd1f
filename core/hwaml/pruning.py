"""Intermediate values and pruning (Optuna's pruners, inside hwaml trials).

Inside ``evaluate`` a component reports ``(step, value)`` pairs of the run's first
objective and asks whether to stop, as with Optuna's ``trial.report`` /
``trial.should_prune``::

    for epoch in range(epochs):
        ...
        ctx.report(epoch, val_accuracy)
        if ctx.should_prune():
            raise hwaml.TrialPruned(f"epoch {epoch}: val {val_accuracy:.3f}")

Without a pruner (``pruner`` unset) ``report`` records the history, which is
stored with the trial, and ``should_prune`` is always false.

With a pruner (``pruner=median``, ``hyperband`` ... : any
:class:`optuna.pruners.BasePruner`, instantiated from the config group) the
decision is Optuna's own. The trials' intermediate values live in an Optuna study
on a journal file in the run directory (``pruning.journal``), which every process
of the run opens: the loop's process, a process pool's workers and Ray actors on
this machine (a Ray cluster needs the run directory on a shared file system).
The run's SQLite store stays the record: at every start, fresh or resumed, the
journal is rebuilt from the store's finished trials, so what a killed run left
half-reported never reaches the pruner.

A pruned trial is stored with status ``pruned``, its last reported value as the
objective and its whole history (``trial.info["intermediate"]``, a list of
``[step, value]``); searchers see it in the history (Optuna samplers as a
``PRUNED`` trial with its intermediate values: TPE ranks it below complete
trials by the last step it reached, the BOHB-style combination with Hyperband).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .types import Trial, TrialStatus

__all__ = ["TrialPruned", "PruningSetup", "Reporter", "JOURNAL", "is_pruned_exception", "rebuild_journal", "make_pruning"]

#: the pruning study's journal, in the run directory
JOURNAL = "pruning.journal"
STUDY = "hwaml-pruning"


class TrialPruned(Exception):
    """Raised by an evaluator to stop its trial once ``ctx.should_prune()`` said so.

    The trial is recorded with status ``pruned`` (not failed); the message is kept
    in ``trial.info["pruned"]``. Optuna's own ``optuna.TrialPruned`` is accepted
    the same way.
    """


def is_pruned_exception(exc: BaseException) -> bool:
    if isinstance(exc, TrialPruned):
        return True
    return any(c.__name__ == "TrialPruned" and c.__module__.startswith("optuna") for c in type(exc).__mro__)


@dataclass(frozen=True)
class PruningSetup:
    """What a process needs to decide pruning: the pruner, the metric it watches
    (the run's first objective) and where the shared study lives."""

    pruner: Any
    metric: str
    direction: str  # "max" | "min"
    run_dir: str

    @property
    def journal(self) -> Path:
        return Path(self.run_dir) / JOURNAL


def make_pruning(pruner: Any, objectives: Mapping[str, str], run_dir: Path | str) -> Optional[PruningSetup]:
    """A :class:`PruningSetup` for ``pruner`` (``None``: no pruning)."""
    if pruner is None:
        return None
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is a core dependency
        raise RuntimeError("pruning needs optuna") from exc
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise TypeError(f"pruner must be an optuna.pruners.BasePruner (from the pruner config group), got {type(pruner).__name__}")
    if not objectives:
        raise ValueError("pruning needs an objective to watch")
    metric, direction = next(iter(objectives.items()))
    return PruningSetup(pruner, str(metric), str(direction), str(run_dir))


# ---------------------------------------------------------------------------
# the shared study
# ---------------------------------------------------------------------------

_STUDIES: Dict[Tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def _storage(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _study(setup: PruningSetup) -> Any:
    """This process's handle on the run's pruning study (opened once per process)."""
    import optuna

    key = (str(setup.journal), os.getpid())
    with _LOCK:
        study = _STUDIES.get(key)
        if study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(
                storage=_storage(setup.journal),
                study_name=STUDY,
                direction="maximize" if setup.direction == "max" else "minimize",
                pruner=setup.pruner,
                load_if_exists=True,
            )
            _STUDIES[key] = study
        return study


def intermediate_of(trial: Trial) -> List[Tuple[int, float]]:
    """A stored trial's intermediate values as ``[(step, value), ...]``."""
    return [(int(s), float(v)) for s, v in (trial.info or {}).get("intermediate", []) or []]


def rebuild_journal(setup: PruningSetup, trials: Sequence[Trial]) -> None:
    """Write a fresh pruning journal holding the store's finished trials.

    Called by the loop before any trial runs (fresh run or resume), so the
    journal never holds a half-reported trial of a killed run.
    """
    from optuna.trial import TrialState, create_trial

    path = setup.journal
    # the lock first: Optuna's JournalFileSymlinkLock (the default of older Optuna) is a
    # symlink to the journal, which a killed run leaves behind; once the journal is gone it
    # dangles, and Path.exists() (which follows it) would miss it: every later acquire spins
    for p in (Path(str(path) + ".lock"), path):
        if p.is_symlink() or p.exists():
            p.unlink()
    with _LOCK:
        for key in [k for k in _STUDIES if k[0] == str(path)]:
            del _STUDIES[key]
    study = _study(setup)
    batch = []
    for t in trials:
        steps = dict(intermediate_of(t))
        value = t.value(setup.metric)
        # hwaml's trial number rides along: the dashboard and tests can map back
        attrs = {"hwaml_number": t.number}
        if t.status == TrialStatus.COMPLETE and math.isfinite(value):
            batch.append(create_trial(state=TrialState.COMPLETE, value=value, intermediate_values=steps, user_attrs=attrs, params={}, distributions={}))
        elif t.status == TrialStatus.PRUNED:
            batch.append(create_trial(state=TrialState.PRUNED, value=value if math.isfinite(value) else None, intermediate_values=steps, user_attrs=attrs, params={}, distributions={}))
        elif steps:
            batch.append(create_trial(state=TrialState.FAIL, intermediate_values=steps, user_attrs=attrs, params={}, distributions={}))
    if batch:
        study.add_trials(batch)


# ---------------------------------------------------------------------------
# one trial's reporter
# ---------------------------------------------------------------------------


class Reporter:
    """``ctx.report`` / ``ctx.should_prune`` of one trial."""

    def __init__(self, number: Optional[int], setup: Optional[PruningSetup] = None):
        self.number = number
        self.setup = setup
        self.history: List[Tuple[int, float]] = []
        self._trial: Any = None  # the Optuna trial, created on the first report

    def report(self, step: int, value: float) -> None:
        """Record the objective's value after ``step`` (an epoch, an iteration)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"ctx.report: step must be an integer, got {step!r}")
        step = int(step)
        if step < 0:
            raise ValueError(f"ctx.report: step must be >= 0, got {step}")
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"ctx.report: value must be a number, got {value!r}") from exc
        if not math.isfinite(value):
            raise ValueError(f"ctx.report: value at step {step} is {value} (the trial's objective must be finite)")
        if any(s == step for s, _ in self.history):
            raise ValueError(f"ctx.report: step {step} was already reported for this trial")
        self.history.append((step, value))
        if self.setup is not None:
            if self._trial is None:
                self._trial = _study(self.setup).ask()
                self._trial.set_user_attr("hwaml_number", self.number)
            self._trial.report(value, step)

    def should_prune(self) -> bool:
        """Whether the run's pruner would stop this trial now (always false without one)."""
        if self.setup is None or self._trial is None:
            return False
        return bool(self._trial.should_prune())

    @property
    def last_value(self) -> Optional[float]:
        return self.history[-1][1] if self.history else None

    def finish(self, status: str, value: Optional[float] = None) -> None:
        """Tell the pruning study how the trial ended (so later trials compare with it)."""
        if self.setup is None or self._trial is None:
            return
        from optuna.trial import TrialState

        study = _study(self.setup)
        if status == TrialStatus.COMPLETE and value is not None and math.isfinite(value):
            study.tell(self._trial, value)
        elif status == TrialStatus.PRUNED:
            study.tell(self._trial, state=TrialState.PRUNED)
        else:
            study.tell(self._trial, state=TrialState.FAIL)
        self._trial = None
