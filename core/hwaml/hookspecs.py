"""The hwaml hook contract: every hook a plugin can implement, in one module.

Hydra chooses the components of a run (searcher, evaluator, backends); the loop
registers those objects with a per-run plugin manager and calls them through
``pm.hook``. Hook arguments never have defaults (pluggy does not pass them) and
an implementation may accept fewer arguments than the spec lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from .space import SearchSpace
    from .types import BuiltModel, Candidate, CostReport, DeployResult, EvalResult, RunContext, RunSummary, Trial

hookspec = pluggy.HookspecMarker("hwaml")

# -------------------------------------------------------------------------
# Start-up hooks
# -------------------------------------------------------------------------


@hookspec
def config_search_path() -> Sequence[str]:
    """Return the Hydra config locations this plugin contributes.

    Called once when Hydra builds its search path, on every installed plugin
    module (the object named by the ``hwaml`` entry point). A plugin returns a list
    like ``["pkg://hwaml_myplugin.conf"]``; that package holds config groups
    (``evaluator/``, ``backend/``, ``searcher/``, ``experiment/``).

    Two plugins shipping the same ``group/option`` is an error naming both.

    :return: A list of Hydra search-path entries (``pkg://`` or ``file://``).

    Implemented by: every plugin that ships configs.
    """


@hookspec(firstresult=True)
def search_space(ctx: "RunContext") -> Optional["SearchSpace"]:
    """Return the search space of the run.

    Called once at the start of a run.

    :param ctx: The run context (config, run directory, seed, rng, store).
    :return: A :class:`hwaml.space.SearchSpace`. The space may carry typed
        metadata in ``space.meta`` (``"graph"``, ``"encoder"`` ...) for
        specialised searchers.

    Stops at first non-None result.

    Implemented by: the evaluator (exactly one active implementation).
    """


# -------------------------------------------------------------------------
# Search-step hooks
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def propose(
    space: "SearchSpace", history: Sequence["Trial"], n: int, ctx: "RunContext"
) -> Optional[Sequence["Candidate"]]:
    """Propose up to ``n`` new candidates.

    Called at each step of the loop. ``history`` holds every finished trial so
    far (complete, infeasible and failed), in trial-number order. To be
    reproducible and resumable, a searcher draws its randomness from
    ``ctx.rng`` (re-seeded by the loop for every step) and rebuilds any state it
    needs from ``history``.

    :param space: The run's search space.
    :param history: Finished trials, oldest first.
    :param n: The most candidates the loop wants now (the executor's batch size).
    :param ctx: The run context.
    :return: A list of at most ``n`` :class:`hwaml.Candidate`; an empty list means
        the searcher is done and the run ends.

    Stops at first non-None result.

    Implemented by: the searcher (exactly one active implementation).
    """


@hookspec
def cost(candidate: "Candidate", ctx: "RunContext") -> Optional["CostReport"]:
    """Predict or measure the hardware cost of a candidate.

    Called for each candidate before it is evaluated, on every active backend.
    The reports are merged; a metric reported by two backends is an error naming
    both. Constraints in the run config are checked on the merged metrics, and an
    infeasible candidate is recorded without being evaluated.

    :param candidate: The candidate to cost.
    :param ctx: The run context.
    :return: A :class:`hwaml.CostReport`, or ``None`` to abstain.

    Implemented by: hardware backends (MCU profiles, latency tables, simulators).
    """


@hookspec(firstresult=True)
def evaluate(candidate: "Candidate", ctx: "RunContext") -> Optional["EvalResult"]:
    """Evaluate a feasible candidate (train, simulate, measure accuracy).

    Called for each candidate that passed the constraints. An exception raised
    here becomes a failed trial with its traceback stored; the search goes on.
    A NaN metric also fails the trial, naming the metric.

    :param candidate: The candidate to evaluate.
    :param ctx: The run context (``ctx.in_worker`` is true inside an executor
        worker).
    :return: A :class:`hwaml.EvalResult` with the objective metrics.

    Stops at first non-None result.

    Implemented by: the evaluator (exactly one active implementation).
    """


@hookspec
def trial_completed(trial: "Trial", ctx: "RunContext") -> None:
    """Observe a trial once it is durably recorded.

    Called after each trial (complete, infeasible or failed) is committed to the
    store. Observers log, track or plot; the return value is ignored and an
    exception here is reported as a warning, never failing the run.

    :param trial: The recorded trial.
    :param ctx: The run context.

    Implemented by: observers (trackers, loggers), any plugin.
    """


@hookspec
def run_finished(summary: "RunSummary", ctx: "RunContext") -> None:
    """Observe the end of a run, after its report (``trials.csv``, ``best.json``,
    ``pareto.png``) and its deploy step are written.

    Called once by ``hwaml run`` (or :meth:`hwaml.loop.SearchLoop.finish`), also
    when the run stops early (every trial failed, a deploy failed, Ctrl-C).
    Trackers log the final files and close their run here; an observer with a
    queue flushes it (in bounded time). As with ``trial_completed``, an exception
    is a warning and never fails the run.

    :param summary: A :class:`hwaml.RunSummary` (counts, best trial, Pareto
        front, the files written, why the run stopped).
    :param ctx: The run context.
    :return: nothing (the return value is ignored).

    Implemented by: observers (trackers, loggers), any plugin.
    """


# -------------------------------------------------------------------------
# Model and metric hooks
# -------------------------------------------------------------------------


@hookspec
def metric_names(ctx: "RunContext") -> Optional[Sequence[str]]:
    """Declare the metric names this component can report.

    Called once at the start of a run, before any work, on every active
    component. The union of the evaluator's and the backends' names is what
    ``objectives`` and ``constraints`` may name: a run that names anything else
    stops at once, naming the key and the known metrics.

    :param ctx: The run context.
    :return: The metric names ``evaluate`` (an evaluator) or ``cost`` (a
        backend) can put in its results. A name may be reported for some
        candidates only.

    Implemented by: every evaluator and every cost backend (the run refuses an
    evaluator or backend that does not declare its metrics).
    """


@hookspec(firstresult=True)
def build_model(candidate: "Candidate", trial: Optional["Trial"], ctx: "RunContext") -> Optional["BuiltModel"]:
    """Build the network a candidate stands for.

    The evaluator is the component that knows how a candidate becomes a network;
    NN cost backends (MCU profiles, latency tables, MACs counters) call this hook
    through ``ctx.build_model(candidate)`` and cost what it returns, so that any
    NN evaluator composes with any NN backend. Deploy steps call it with the
    finished ``trial`` to get its trained weights (found through
    ``trial.artifacts``) and calibration data.

    :param candidate: The candidate.
    :param trial: ``None`` while costing (before evaluation: untrained weights
        are fine, shapes are what count); the finished trial when deploying.
    :param ctx: The run context (``ctx.space`` is the run's space).
    :return: A :class:`hwaml.BuiltModel`.

    Stops at first non-None result.

    Implemented by: NN evaluators (at most one active implementation).
    """


# -------------------------------------------------------------------------
# Deployment hooks
# -------------------------------------------------------------------------


@hookspec
def deploy(trial: "Trial", ctx: "RunContext") -> Optional["DeployResult"]:
    """Turn a finished trial into an artefact (C project, ONNX file, netlist).

    Called by ``hwaml deploy RUN_DIR`` (and by runs with ``deploy.enabled=true``)
    on the best trial or the one asked for, on every active component that
    implements it, the evaluator first (``deploy.target=NAME`` picks one by its
    component name: ``evaluator`` or a backend's, such as ``stm32f746``). Checkpoints are found through ``trial.artifacts``, never
    by file-name convention. Files go under ``ctx.run_dir / "deploy"``.
    Deploying a failed or infeasible trial is refused by the core unless forced.

    :param trial: The chosen trial (status, metrics, cost, artifacts).
    :param ctx: The run context (``ctx.run_dir`` is the run being deployed;
        ``ctx.build_model`` gives the evaluator's network with trained weights).
    :return: A :class:`hwaml.DeployResult` (``source`` naming the component), or
        ``None`` when this component has nothing to deploy for the trial.

    Implemented by: every component that can deploy (the evaluator: ONNX or a
    state dict, a netlist; a backend: a C project).
    """
