"""``micronet_score``: the MicroNet Challenge score as a cost backend.

It costs the evaluator's network (``ctx.build_model(candidate).module``, a
:class:`~hwaml_micronet_lm.model.MicroNetLM` or the LSTM baseline) by the
challenge's rules (:mod:`hwaml_micronet_lm.score`) and reports

* ``micronet_score``: params/159M + ops/318M (the official normalisation);
* ``params_eq``, ``ops_eq``: parameter- and operation-equivalents per test token;
* ``params_m``, ``ops_m``: the raw counts in millions (32-bit, dense);
* ``same_corpus_score``: the same equivalents normalised by the raw counts of the
  same-corpus LSTM baseline (when the evaluator's ``BuiltModel.info`` carries
  ``baseline_params`` / ``baseline_ops``).

Bin-dependent operations are averaged with the bin fractions the evaluator puts
in ``BuiltModel.info`` (``input_fractions``, ``target_fractions``: the test
split's tokens); without them every token is counted in the head bin.
"""

from __future__ import annotations

from typing import List, Optional

from hwaml import Candidate, CostReport, RunContext, hookimpl

from .score import BASELINE_OPS, BASELINE_PARAMS, score_model

__all__ = ["MicroNetScore", "METRICS"]

METRICS = ("micronet_score", "params_eq", "ops_eq", "params_m", "ops_m", "same_corpus_score")


class MicroNetScore:
    """Backend: the MicroNet score of the evaluator's model.

    :param params_baseline, ops_baseline: the normalisers (the challenge's LSTM: 159M, 318M).
    :param use_cache: count the cache (``None``: as the model is configured).
    """

    def __init__(self, params_baseline: float = BASELINE_PARAMS, ops_baseline: float = BASELINE_OPS, use_cache: Optional[bool] = None):
        if not (params_baseline > 0 and ops_baseline > 0):
            raise ValueError(f"baseline counts must be positive, got {params_baseline}, {ops_baseline}")
        self.params_baseline = float(params_baseline)
        self.ops_baseline = float(ops_baseline)
        self.use_cache = use_cache

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(METRICS)

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        if ctx.build_model is None:
            raise RuntimeError("micronet_score costs the evaluator's model, but this run's evaluator builds none (ctx.build_model is None)")
        built = ctx.build_model(candidate)
        info = dict(built.info or {})
        try:
            sheet = score_model(built.module, info.get("input_fractions"), info.get("target_fractions"), self.use_cache)
        except TypeError as exc:
            raise TypeError(f"micronet_score: {exc} (from evaluator {built.source!r}); compose it with a micronet_* evaluator") from exc
        t = sheet.totals()
        metrics = {
            "micronet_score": sheet.score(self.params_baseline, self.ops_baseline),
            "params_eq": t["params_eq"],
            "ops_eq": t["ops_eq"],
            "params_m": t["raw_params"] / 1e6,
            "ops_m": t["raw_ops"] / 1e6,
        }
        if info.get("baseline_params") and info.get("baseline_ops"):
            metrics["same_corpus_score"] = t["params_eq"] / info["baseline_params"] + t["ops_eq"] / info["baseline_ops"]
        return CostReport(metrics=metrics, source="micronet_score", info={"quantized_bits": sheet.quantized_bits, "notes": sheet.notes})
