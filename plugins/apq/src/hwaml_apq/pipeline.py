"""``searcher=nas_amc_haq``: the separate pipeline APQ is compared with.

Three stages on the same supernet, data, hardware model and budget, each
one handing its best trial to the next:

1. **NAS** (OFA-style evolution with a full-precision accuracy predictor):
   kernels and depths only, every block at its widest and every layer at 8
   bits; the constraint's upper bounds are multiplied by ``nas_budget_scale``
   (an architecture search that does not see the later stages is given their
   head-room); its best ``nas_trials`` architectures are evaluated;
2. **AMC** on the best NAS network, pruning at 8 bits under
   ``amc_budget_scale`` times the budget;
3. **HAQ** on the best AMC network, mixed precision under the budget itself.

The run's constraints are the final budget, and the loop evaluates only what
meets them, so the NAS and AMC candidates are evaluated the way a pipeline
without a precision search would ship them: with the highest *uniform*
bit-width (8, 6 or 4 bits everywhere) that meets the budget. HAQ then
replaces that uniform precision by a learned mixed one.

The NAS predictor is ``fp_predictor_path`` (trained on full-precision
samples, as for APQ), or fitted on the NAS stage's own trials after
``nas_warmup`` random ones.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from hwaml import Candidate, RunContext, SearchSpace, Trial, hookimpl
from hwaml.config import as_config

from .agents import AMCSearcher, HAQSearcher, _scaled_constraints
from .evolution import COST_MODELS, EvolutionConfig, config_key, encoder_for, evolve, make_feasibility
from .space import BIT_KEYS

__all__ = ["SeparatePipelineSearcher"]


def _fixed(space: SearchSpace, bits: int):
    meta = space.meta["apq"]

    def project(cfg: Dict[str, Any]) -> Dict[str, Any]:
        out = {}
        for st in meta["stages"]:
            s = cfg[st["name"]]
            def fix(b, widths):
                return {**b, "width": max(widths), **{k: bits for k in BIT_KEYS}}
            out[st["name"]] = {"first": fix(s["first"], st["first_widths"]), "rest": [fix(b, st["rest_widths"]) for b in s["rest"]]}
        return out

    return project


def uniform_fit(space: SearchSpace, feasible) -> Any:
    """``config -> config`` at the highest uniform bit-width that meets the budget
    (the lowest when none does; the loop then records it infeasible)."""
    meta = space.meta["apq"]
    bits = sorted(meta["bit_choices"], reverse=True)

    def fit(cfg: Dict[str, Any]) -> Dict[str, Any]:
        out = cfg
        for b in bits:
            out = {}
            for st in meta["stages"]:
                s = cfg[st["name"]]

                def setb(blk):
                    nb = {**blk, **{k: b for k in BIT_KEYS}}
                    if meta["forbid_k7_a4"] and nb["kernel"] == 7 and nb["dw_a_bits"] == 4:
                        nb["dw_a_bits"] = min(x for x in meta["bit_choices"] if x != 4)
                    return nb

                out[st["name"]] = {"first": setb(s["first"]), "rest": [setb(x) for x in s["rest"]]}
            if feasible is None or feasible(out):
                return out
        return out

    return fit


def _with_bits(space: SearchSpace, cfg: Dict[str, Any], bits: int) -> Dict[str, Any]:
    """``cfg`` with every bit-width set to ``bits`` (widths kept)."""
    return uniform_fit(SearchSpace(space.dims, meta={**space.meta, "apq": {**space.meta["apq"], "bit_choices": [bits]}}, name=space.name), None)(cfg)


class SeparatePipelineSearcher:
    """NAS -> AMC -> HAQ in one run (see the module doc).

    :param nas_trials: trials of the NAS stage (warm-up included).
    :param nas_warmup: random trials before the NAS predictor is fitted (without ``fp_predictor_path``).
    :param amc_episodes: AMC episodes (trials).
    :param haq_episodes: HAQ episodes (trials).
    :param nas_budget_scale / amc_budget_scale: budget multipliers of the first two stages.
    :param evolution: the NAS stage's :class:`~hwaml_apq.evolution.EvolutionConfig`.
    :param amc_agent / haq_agent: DDPG settings to change.
    :param cost_model / hardware: the NAS evolution's constraint check, as
        :class:`~hwaml_apq.evolution.APQEvolutionSearcher`'s (the same for both searches).
    """

    def __init__(
        self,
        nas_trials: int = 20,
        nas_warmup: int = 10,
        amc_episodes: int = 30,
        haq_episodes: int = 30,
        nas_budget_scale: float = 1.5,
        amc_budget_scale: float = 1.2,
        fp_predictor_path: Optional[str] = None,
        evolution: Optional[Mapping[str, Any]] = None,
        amc_agent: Optional[Mapping[str, Any]] = None,
        haq_agent: Optional[Mapping[str, Any]] = None,
        metric: str = "accuracy",
        cost_model: str = "table",
        hardware: Optional[Mapping[str, Any]] = None,
    ):
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model: {cost_model!r} is not one of {COST_MODELS}")
        self.cost_model = cost_model
        self.hardware = dict(hardware) if hardware else None
        self._nas_feasible: Any = None
        self.nas_trials = int(nas_trials)
        self.nas_warmup = int(nas_warmup)
        self.nas_budget_scale = float(nas_budget_scale)
        self.evolution = as_config(EvolutionConfig, evolution, "evolution")
        self.fp_predictor_path = fp_predictor_path
        self.metric = metric
        self.amc = AMCSearcher(episodes=amc_episodes, agent=amc_agent, metric=metric, budget_scale=amc_budget_scale)
        self.haq = HAQSearcher(episodes=haq_episodes, agent=haq_agent, metric=metric)
        self._fp = None

    def _best(self, history: Sequence[Trial], stage: str) -> Optional[Trial]:
        done = [t for t in history if t.candidate.meta.get("stage") == stage and t.ok and math.isfinite(t.value(self.metric))]
        return max(done, key=lambda t: t.value(self.metric)) if done else None

    def _nas(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext, done: int) -> List[Candidate]:
        from hwaml.constraints import is_feasible

        from .predictor import PredictorTraining, fit_fp_predictor, load_predictor

        encoder = encoder_for(space, "nas_amc_haq")
        project = _fixed(space, 8)
        bounds = _scaled_constraints(ctx.constraints, self.nas_budget_scale) if ctx.constraints else {}
        if self._nas_feasible is None:
            self._nas_feasible = (make_feasibility(space, ctx, bounds, self.cost_model, self.hardware, "nas_amc_haq") if (bounds and ctx.cost_fn) else None,)
        feasible = self._nas_feasible[0]
        seen = {config_key(t.config) for t in history}
        mine = [t for t in history if t.candidate.meta.get("stage") == "nas" and t.ok]
        predict = None
        if self.fp_predictor_path:
            if self._fp is None:
                self._fp, _ = load_predictor(self.fp_predictor_path)
            model = self._fp
            predict = lambda cs: model.predict(encoder.matrix(cs)[:, : encoder.n_arch])
        elif len(mine) >= max(2, self.nas_warmup):
            X = encoder.matrix([t.config for t in mine])[:, : encoder.n_arch]
            model = fit_fp_predictor(X, np.asarray([t.value(self.metric) for t in mine]), PredictorTraining(epochs=200), seed=int(ctx.rng.integers(2**31)))
            predict = lambda cs: model.predict(encoder.matrix(cs)[:, : encoder.n_arch])
        from hwaml.constraints import normalise_constraints

        final = normalise_constraints(ctx.constraints)
        fit = uniform_fit(space, (lambda c: bool(is_feasible(ctx.cost_fn(Candidate(dict(c))), final))) if (final and ctx.cost_fn) else None)
        out: List[Candidate] = []
        want = min(n, self.nas_trials - done)
        if predict is None:
            for _ in range(self.evolution.max_draws * max(1, want)):
                if len(out) >= want:
                    break
                c = project(space.sample(ctx.rng))
                if config_key(c) not in seen and (feasible is None or feasible(c)):
                    seen.add(config_key(c))
                    out.append(Candidate(fit(c), origin="nas_random", meta={"stage": "nas", "architecture": c}))
            return out
        result = evolve(space, predict, ctx.rng, self.evolution, feasible, project=project)
        for score, c in result.population:
            if len(out) >= want:
                break
            if config_key(c) not in seen:
                seen.add(config_key(c))
                out.append(Candidate(fit(c), origin="nas_evolution", meta={"stage": "nas", "predicted_fp32": score, "architecture": c}))
        return out

    @hookimpl
    def propose(self, space: SearchSpace, history: Sequence[Trial], n: int, ctx: RunContext) -> List[Candidate]:
        encoder_for(space, "nas_amc_haq")
        nas_done = sum(1 for t in history if t.candidate.meta.get("stage") == "nas")
        if nas_done < self.nas_trials:
            out = self._nas(space, history, n, ctx, nas_done)
            if out:
                return out
        best_nas = self._best(history, "nas")
        if best_nas is None:
            return []
        amc_hist = [t for t in history if t.candidate.meta.get("stage") == "amc"]
        if self.amc.base_config is None:
            self.amc.base_config = _fixed(space, 8)(dict(best_nas.config))  # AMC prunes the 8-bit network
            from hwaml.constraints import is_feasible, normalise_constraints

            final = normalise_constraints(ctx.constraints)
            self.amc.postprocess = uniform_fit(space, (lambda c: bool(is_feasible(ctx.cost_fn(Candidate(dict(c))), final))) if (final and ctx.cost_fn) else None)
        if len(amc_hist) < self.amc.episodes:
            out = self.amc.propose(space, amc_hist, n, ctx)
            if out:
                return [Candidate(c.config, origin="amc", meta={**c.meta, "stage": "amc"}) for c in out]
        best_amc = self._best(history, "amc") or best_nas
        if self.haq.base_config is None:
            self.haq.base_config = _with_bits(space, dict(best_amc.config), 8)
        haq_hist = [t for t in history if t.candidate.meta.get("stage") == "haq"]
        out = self.haq.propose(space, haq_hist, n, ctx)
        return [Candidate(c.config, origin="haq", meta={**c.meta, "stage": "haq"}) for c in out]
