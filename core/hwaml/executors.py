"""Executors run a batch of candidates (cost + evaluation) and yield outcomes.

``inline``  in the loop's own process (``workers=1``, the default: no overhead);
``local``   a process pool on this machine;
``ray``     Ray tasks on actors, connecting to ``address`` or starting a local
            instance; the same code runs on a Ray cluster.

Workers rebuild the evaluator and backends from the run's configuration, once per
worker, rather than pickling live objects (models, simulators) across processes;
the run's search space travels to them (``ctx.space``). Each worker limits its
thread pools to ``threads`` (default: the machine's cores divided by the
workers), so parallel trials do not oversubscribe the cores.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .types import Candidate, RunContext


def trial_rng(seed: int, number: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(number), 0x7472])


def default_threads(workers: int) -> int:
    """Threads per trial when ``workers`` trials run at once on this machine."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


class Executor:
    """Base class; ``run`` yields ``(candidate, TrialOutcome)`` as they finish."""

    workers: int = 1
    #: CPU threads per trial (``None``: no limit, the inline default)
    threads: Optional[int] = None

    def start(self, pm: Any, ctx: RunContext, objectives: Mapping[str, str], trial_timeout_s: Optional[float] = None) -> None:
        self.pm, self.ctx, self.objectives = pm, ctx, dict(objectives)
        self.trial_timeout_s = trial_timeout_s

    def run(self, candidates: Sequence[Candidate]) -> Iterator[Tuple[Candidate, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InlineExecutor(Executor):
    """Evaluate in the loop's process, one candidate after another."""

    def __init__(self, workers: int = 1, threads: Optional[int] = None):
        self.workers = 1
        self.threads = threads

    def start(self, pm, ctx, objectives, trial_timeout_s=None):
        super().start(pm, ctx, objectives, trial_timeout_s)
        if self.threads:
            from .trial import apply_thread_limit

            apply_thread_limit(self.threads)

    def run(self, candidates):
        from .trial import execute_trial

        for c in candidates:
            ctx = replace(self.ctx, rng=trial_rng(self.ctx.seed, c.number), threads=self.threads)
            yield c, execute_trial(self.pm, c, ctx, self.objectives, self.trial_timeout_s)


# -- process pool ------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(cfg_container: Any, run_dir: str, seed: int, objectives: dict, constraints: dict, space: Any = None, threads: Optional[int] = None, trial_timeout_s: Optional[float] = None, pruning: Any = None) -> None:
    """Build the evaluator and backends once per worker process."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from .config import instantiate_components
    from .plugins import Registry, build_run_manager, make_plugin_manager
    from .trial import apply_thread_limit, wire_context

    apply_thread_limit(threads)
    cfg = OmegaConf.create(cfg_container)
    comps = instantiate_components(cfg, with_searcher=False)
    apply_thread_limit(threads)  # again: torch may have been imported by a component
    # workers only cost and evaluate: no need to import every installed plugin
    pm = build_run_manager(comps, registry=Registry(make_plugin_manager()))
    ctx = RunContext(
        cfg=cfg,
        run_dir=Path(run_dir),
        seed=seed,
        rng=None,
        objectives=objectives,
        constraints=constraints,
        in_worker=True,
        space=space,
        threads=threads,
        # the loop's pruner (pickled); the study it decides on is the run's journal
        pruning=pruning,
    )
    ctx = wire_context(pm, ctx)
    _WORKER.update(pm=pm, ctx=ctx, objectives=objectives, timeout=trial_timeout_s)


def _worker_run(candidate: Candidate):
    from .trial import execute_trial

    ctx = replace(_WORKER["ctx"], rng=trial_rng(_WORKER["ctx"].seed, candidate.number))
    return execute_trial(_WORKER["pm"], candidate, ctx, _WORKER["objectives"], _WORKER.get("timeout"))


def _cfg_container(ctx: RunContext) -> Any:
    from omegaconf import OmegaConf

    if ctx.cfg is None:
        raise RuntimeError(
            "a process-pool or Ray executor rebuilds components from the run config; "
            "construct SearchLoop with cfg=... (hwaml run does this) or use the inline executor"
        )
    return OmegaConf.to_container(ctx.cfg, resolve=True)


def _init_args(ctx: RunContext, objectives: Mapping[str, str], threads: Optional[int], timeout: Optional[float]) -> tuple:
    return (_cfg_container(ctx), str(ctx.run_dir), ctx.seed, dict(objectives), dict(ctx.constraints), ctx.space, threads, timeout, ctx.pruning)


class LocalExecutor(Executor):
    """A process pool of ``workers`` processes (``workers<=1`` runs inline).

    :param threads: CPU threads per trial; ``None``: cores // workers.
    """

    def __init__(self, workers: int = 1, start_method: str = "spawn", threads: Optional[int] = None):
        self.workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
        self.start_method = start_method
        self.threads = int(threads) if threads else (default_threads(self.workers) if self.workers > 1 else None)
        self._pool: Optional[ProcessPoolExecutor] = None
        self._inline: Optional[InlineExecutor] = None

    def start(self, pm, ctx, objectives, trial_timeout_s=None):
        super().start(pm, ctx, objectives, trial_timeout_s)
        if self.workers <= 1:
            self._inline = InlineExecutor(threads=self.threads)
            self._inline.start(pm, ctx, objectives, trial_timeout_s)
            return
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp.get_context(self.start_method),
            initializer=_worker_init,
            initargs=_init_args(ctx, objectives, self.threads, trial_timeout_s),
        )

    def run(self, candidates):
        if self._inline is not None:
            yield from self._inline.run(candidates)
            return
        assert self._pool is not None
        futures = {self._pool.submit(_worker_run, c): c for c in candidates}
        while futures:
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futures[f].number):
                cand = futures.pop(fut)
                yield cand, _outcome_of(fut, cand)

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _outcome_of(fut: Any, cand: Candidate):
    import pickle
    from concurrent.futures.process import BrokenProcessPool

    from .trial import MetricConflict, TrialOutcome
    from .types import TrialStatus

    try:
        return fut.result()
    except MetricConflict:
        raise
    except (BrokenProcessPool, pickle.PicklingError, OSError, EOFError) as exc:  # a dead worker (or an unpicklable result) fails the trial, not the run
        return TrialOutcome(TrialStatus.FAILED, error=f"worker failed while running trial {cand.number}: {type(exc).__name__}: {exc}")


# -- Ray -----------------------------------------------------------------------


class RayExecutor(Executor):
    """Evaluate on Ray actors (one per worker), locally or on a cluster.

    ``address=None`` starts (or joins) a local Ray instance; ``address="auto"`` or
    ``"ray://host:10001"`` connects to a running cluster.
    """

    def __init__(self, workers: int = 2, address: Optional[str] = None, num_cpus_per_worker: float = 1.0, init_kwargs: Optional[dict] = None, threads: Optional[int] = None):
        self.workers = int(workers)
        # a Ray worker gets num_cpus_per_worker cores: that many threads
        self.threads = int(threads) if threads else max(1, int(num_cpus_per_worker))
        self.address = address
        self.num_cpus_per_worker = num_cpus_per_worker
        self.init_kwargs = dict(init_kwargs or {})
        self._pool = None
        self._started_ray = False

    def start(self, pm, ctx, objectives, trial_timeout_s=None):
        super().start(pm, ctx, objectives, trial_timeout_s)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - exercised by doctor
            raise RuntimeError("executor=ray needs Ray: pip install 'hwaml[ray]'") from exc
        from ray.util import ActorPool

        if not ray.is_initialized():
            kwargs = dict(address=self.address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
            kwargs.update(self.init_kwargs)
            ray.init(**kwargs)
            self._started_ray = True

        @ray.remote(num_cpus=self.num_cpus_per_worker)
        class TrialActor:  # pragma: no cover - runs inside Ray workers
            def __init__(self, *args):
                _worker_init(*args)

            def run(self, candidate):
                return _worker_run(candidate)

        args = _init_args(ctx, objectives, self.threads, trial_timeout_s)
        self._actors = [TrialActor.remote(*args) for _ in range(self.workers)]
        self._pool = ActorPool(self._actors)

    def run(self, candidates):
        from .trial import TrialOutcome
        from .types import TrialStatus

        cands: List[Candidate] = list(candidates)
        for c in cands:
            self._pool.submit(lambda actor, cand: actor.run.remote(cand), c)
        results = {}
        for c in cands:
            try:
                out = self._pool.get_next()
            except Exception as exc:  # noqa: BLE001 - Ray wraps a worker's error in its own types
                if "MetricConflict" in f"{type(exc).__name__} {exc}":
                    from .trial import MetricConflict

                    raise MetricConflict(str(exc)) from exc
                out = TrialOutcome(TrialStatus.FAILED, error=f"Ray worker failed: {type(exc).__name__}: {exc}")
            results[c.number] = out
            yield c, out

    def close(self):
        if self._started_ray:
            import ray

            for a in getattr(self, "_actors", []):
                ray.kill(a)
            ray.shutdown()
            self._started_ray = False
