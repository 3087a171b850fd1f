"""The cost backend: what a candidate costs on the target hardware.

This example prices the polynomial of :mod:`hwaml_myplugin.evaluator` on a
small processor: Horner's rule needs one multiply-add per degree, so latency
is ``degree * ns_per_mac`` plus a fixed overhead, and the model stores
``degree + 1`` coefficients. Metric names carry the plugin's prefix because a
metric key may be reported by only one backend in a run.
"""

from __future__ import annotations

from typing import List, Optional

from hwaml import Candidate, CostReport, RunContext, hookimpl


class MyCost:
    """Latency (µs) and parameter count of a polynomial candidate."""

    def __init__(self, ns_per_mac: float = 50.0, overhead_ns: float = 200.0, max_params: Optional[int] = None):
        self.ns_per_mac = ns_per_mac
        self.overhead_ns = overhead_ns
        self.max_params = max_params

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        # every metric cost can report; a constraint on anything else stops the run at start
        return ["myplugin_latency_us", "myplugin_params"]

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> Optional[CostReport]:
        if "degree" not in candidate.config:
            return None  # not a candidate this backend understands: abstain
        degree = int(candidate.config["degree"])
        params = degree + 1
        latency_us = (self.overhead_ns + degree * self.ns_per_mac) / 1000.0
        # feasible=False is the backend's own verdict ("does not fit"); None leaves it to the run's constraints
        fits = None if self.max_params is None else params <= self.max_params
        return CostReport({"myplugin_latency_us": latency_us, "myplugin_params": float(params)}, source="myplugin_cost", feasible=fits)
