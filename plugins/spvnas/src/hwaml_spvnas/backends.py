"""Cost backends for sparse LiDAR networks: MACs per kernel-map entry, measured CPU latency.

Both cost the evaluator's network (``ctx.build_model(candidate).module``) on the
scans it lists in ``BuiltModel.calibration`` (SPVNAS networks take a point
cloud, not a dense tensor, so image backends cannot cost them).

``spvnas_macs`` counts what SPVNAS users asked for: per sparse convolution
``kernel-map entries x C_in x C_out`` (the entries are the (input, output) pairs
the kernel actually connects on that scan), plus ``points x C_in x C_out`` per
point-wise linear layer, averaged over the scans; ``params_m`` the parameters.
``spvnas_latency`` times a forward pass per scan on this CPU (median of
``repeats`` after ``warmup``, ``threads`` intra-op threads) and remembers each
configuration's result, so a candidate costed twice gets the same number.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any, Dict, List

import torch

from hwaml import CostReport, hookimpl

from .sparse import PointTensor, count_macs

__all__ = ["SparseMacsBackend", "CpuLatencyBackend"]


def _built(ctx: Any, candidate: Any, who: str):
    if getattr(ctx, "build_model", None) is None:
        raise RuntimeError(f"{who}: the run's evaluator builds no network (ctx.build_model is None); compose it with evaluator=spvnas_lidar")
    built = ctx.build_model(candidate)
    scans = built.calibration
    if not isinstance(scans, (list, tuple)) or not scans or not all(isinstance(s, PointTensor) for s in scans):
        raise TypeError(f"{who}: costs sparse networks on LiDAR scans (BuiltModel.calibration: a list of PointTensor); {built.source or 'the evaluator'} gave {type(scans).__name__}")
    return built, list(scans)


def _fresh(z: PointTensor) -> PointTensor:
    return PointTensor(z.F, z.C)  # no cached voxel indices: every forward does all of its work


class SparseMacsBackend:
    def __init__(self, name: str = "spvnas_macs"):
        self.name = name

    @hookimpl
    def metric_names(self, ctx):
        return ["macs_m", "params_m"]

    @hookimpl
    def cost(self, candidate, ctx):
        built, scans = _built(ctx, candidate, self.name)
        net = built.module
        per_scan = []
        with torch.no_grad():
            for z in scans:
                with count_macs() as m:
                    net(_fresh(z))
                per_scan.append(m.total)
        params = sum(p.numel() for p in net.parameters())
        return CostReport(
            metrics={"macs_m": float(sum(per_scan) / len(per_scan)) / 1e6, "params_m": params / 1e6},
            source=self.name,
            info={"macs_per_scan": per_scan},
        )


class CpuLatencyBackend:
    def __init__(self, threads: int = 1, warmup: int = 1, repeats: int = 3, name: str = "spvnas_latency"):
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.threads, self.warmup, self.repeats, self.name = int(threads), int(warmup), int(repeats), name
        self._memo: Dict[str, float] = {}

    @hookimpl
    def metric_names(self, ctx):
        return ["latency_ms"]

    @hookimpl
    def cost(self, candidate, ctx):
        key = json.dumps(candidate.config, sort_keys=True, default=str)
        if key not in self._memo:
            built, scans = _built(ctx, candidate, self.name)
            net = built.module.eval()
            threads = self.threads if ctx.threads is None else min(self.threads, int(ctx.threads))
            old = torch.get_num_threads()
            torch.set_num_threads(max(1, threads))
            try:
                times: List[float] = []
                with torch.no_grad():
                    for z in scans:
                        for _ in range(self.warmup):
                            net(_fresh(z))
                        t = []
                        for _ in range(self.repeats):
                            zz = _fresh(z)
                            t0 = time.perf_counter()
                            net(zz)
                            t.append(time.perf_counter() - t0)
                        times.append(statistics.median(t))
            finally:
                torch.set_num_threads(old)
            self._memo[key] = 1000.0 * sum(times) / len(times)
        return CostReport(metrics={"latency_ms": self._memo[key]}, source=self.name, info={"threads": self.threads})
