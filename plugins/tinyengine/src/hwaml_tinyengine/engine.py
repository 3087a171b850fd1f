"""The Python API other plugins call: plan, cost, compile, build and run.

>>> plan = plan_model(model, (3, 160, 160))            # MemoryPlan
>>> plan.peak_sram_kb, plan.flash_kb
>>> estimate_latency_ms(plan, load_profile("stm32f746"))
>>> compiled = compile_model(model, calib, "out/", load_profile("stm32f746"))
>>> outputs = build_and_run(compiled.project, compiled.quantize(images))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import networkx as nx
import numpy as np
import torch
import torch.nn as nn

from .firmware import STACK_MIN_BYTES
from .codegen import CProject, build_and_run, build_project, generate_project, run_test_harness
from .device import DeviceProfile, estimate_energy_mj, estimate_latency_ms, load_profile
from .ir import import_model
from .memory_planner import MemoryPlan, plan_layer_by_layer, plan_memory
from .quantize import quantize_graph, quantize_input, run_int8

__all__ = [
    "plan_model",
    "cost_of",
    "compile_model",
    "CompiledModel",
    "build_and_run",
    "estimate_latency_ms",
    "load_profile",
    "input_shape_of",
    "COST_METRICS",
]

log = logging.getLogger(__name__)


def input_shape_of(model: nn.Module, input_shape: Optional[Sequence[int]] = None) -> tuple:
    """``input_shape`` if given, else the model's ``input_shape`` attribute."""
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no input_shape attribute; pass input_shape=(C, H, W)")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape}")
    return shape


def plan_model(
    model: Union[nn.Module, nx.DiGraph],
    input_shape: Optional[Sequence[int]] = None,
    calib_data: Any = None,
    patch: bool = True,
    inplace: bool = True,
    max_overhead: float = 0.3,
    **kwargs: Any,
) -> MemoryPlan:
    """Import (if needed) and plan a model; ``plan.peak_sram_kb``,
    ``plan.flash_kb``, ``plan.per_layer`` and ``plan.table()`` describe it.

    Memory depends on shapes only, so ``calib_data`` is not needed here; it is
    accepted for symmetry with :func:`compile_model`.
    """
    g = model if isinstance(model, nx.DiGraph) else import_model(model, input_shape_of(model, input_shape))
    return plan_memory(g, patch=patch, inplace=inplace, max_overhead=max_overhead, **kwargs)


#: the metrics :func:`cost_of` (and so the TinyEngine backend's ``cost``) reports
COST_METRICS = ("peak_sram_kb", "flash_kb", "latency_ms", "fits", "macs_m", "energy_mj")


def cost_of(plan: MemoryPlan, profile: DeviceProfile) -> Dict[str, float]:
    """The backend's metrics for a plan on a device (:data:`COST_METRICS`).

    ``macs_m`` is the network's multiply-accumulates (millions, what a
    layer-by-layer run computes; the patch stage's recomputation is in
    ``plan.summary()`` and in the latency); ``energy_mj`` is latency x the
    profile's active power.
    """
    latency = estimate_latency_ms(plan, profile)
    # the stack the firmware needs (measured in QEMU well below the linker's reserve) goes into the fit check
    fits = plan.peak_sram_kb + STACK_MIN_BYTES / 1024.0 <= profile.sram_kb and plan.flash_kb <= profile.flash_kb
    return {
        "peak_sram_kb": plan.peak_sram_kb,
        "flash_kb": plan.flash_kb,
        "latency_ms": latency,
        "fits": 1.0 if fits else 0.0,
        "macs_m": plan.base_macs / 1e6,
        "energy_mj": estimate_energy_mj(latency, profile),
    }


@dataclass
class CompiledModel:
    """A compiled model: quantised IR, memory plan, C project and predicted cost."""

    graph: nx.DiGraph
    plan: MemoryPlan
    project: CProject
    cost: Dict[str, float]

    def quantize(self, x: Any) -> np.ndarray:
        """Float NCHW images -> int8 NHWC model inputs."""
        return quantize_input(self.graph, x)

    def reference(self, xq: np.ndarray) -> np.ndarray:
        """The Python int8 reference's outputs for int8 inputs."""
        return run_int8(self.graph, xq)


def compile_model(
    model: nn.Module,
    calib_data: Any,
    out_dir: Any,
    profile: Union[DeviceProfile, str, None] = None,
    input_shape: Optional[Sequence[int]] = None,
    patch: bool = True,
    max_overhead: float = 0.3,
    test_inputs: Any = None,
    build: bool = True,
    prefix: str = "model",
    **plan_kwargs: Any,
) -> CompiledModel:
    """Quantise ``model`` with ``calib_data`` (float NCHW), plan its memory and
    write the C project to ``out_dir`` (built with gcc when ``build``).

    ``test_inputs`` (float NCHW) are embedded in the test harness with the
    reference outputs; by default the first calibration images are used.
    """
    shape = input_shape_of(model, input_shape)
    g = import_model(model, shape)
    calib = None if calib_data is None else torch.as_tensor(calib_data, dtype=torch.float64)
    qg = quantize_graph(g, calib)
    plan = plan_memory(qg, patch=patch, max_overhead=max_overhead, **plan_kwargs)
    if test_inputs is None and calib is not None:
        test_inputs = calib[:8]
    xq = quantize_input(qg, test_inputs) if test_inputs is not None else None
    prof = load_profile(profile) if isinstance(profile, str) else profile
    project = generate_project(qg, plan, Path(out_dir), xq, profile=prof, prefix=prefix)
    if build:
        build_project(project)
    cost = cost_of(plan, prof) if prof is not None else {"peak_sram_kb": plan.peak_sram_kb, "flash_kb": plan.flash_kb}
    log.info("compiled %s: %s", out_dir, plan.summary())
    return CompiledModel(qg, plan, project, cost)


__all__ += ["run_test_harness", "plan_layer_by_layer", "build_project"]
