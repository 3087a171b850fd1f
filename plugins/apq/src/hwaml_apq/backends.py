"""``backend=bitfusion``: latency and energy of the evaluator's network on the
BitFusion-style accelerator model of :mod:`hwaml_apq.hardware`.

The backend costs ``ctx.build_model(candidate).module`` and nothing else, so
it composes with any NN evaluator: quantized layers are costed at their bits,
full-precision ones at ``config.default_bits``.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Union

from hwaml import Candidate, CostReport, RunContext, hookimpl
from hwaml.config import as_config

from .hardware import BitFusionConfig, network_cost, network_layers

__all__ = ["BitFusionBackend"]


class BitFusionBackend:
    """Cost backend reporting ``latency_ms`` and ``energy_mj`` (per inference).

    :param config: a :class:`~hwaml_apq.hardware.BitFusionConfig` or a mapping of its fields.
    :param name: the backend's name (``CostReport.source``).
    """

    def __init__(self, config: Union[BitFusionConfig, Mapping[str, Any], None] = None, name: str = "bitfusion"):
        self.config = as_config(BitFusionConfig, config, "config")
        self.name = name

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["latency_ms", "energy_mj"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> CostReport:
        if ctx.build_model is None:
            raise RuntimeError(
                f"backend {self.name} costs the evaluator's network (ctx.build_model), but this run's evaluator builds none; "
                f"compose it with an NN evaluator (apq_digits, apq_fashion, ofa_digits, ...)"
            )
        model = ctx.build_model(candidate)
        layers = network_layers(model.module, model.input_shape, self.config.default_bits)
        totals = network_cost(layers, self.config)
        return CostReport(
            {"latency_ms": totals["latency_ms"], "energy_mj": totals["energy_mj"]},
            source=self.name,
            info={"layers": len(layers), "dram_kb": totals["dram_kb"], "macs_m": totals["macs_m"]},
        )
