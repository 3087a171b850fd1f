"""MCU device profiles, Flash accounting and the latency model.

A profile is what a backend config file holds (``conf/backend/<device>.yaml``):
SRAM and Flash sizes, the core clock, and cycles per multiply-accumulate by
layer type for int8 kernels (plus cycles per element for adds, pooling and
copies, and a fixed overhead per layer call). The cycle figures are estimates of
CMSIS-NN/TinyEngine-class kernels on Cortex-M4 (SIMD ``SMLAD``, two 16-bit MACs
per cycle at best) and Cortex-M7 (dual issue, caches); they are not measured on
hardware, and the configs can be edited per board.

Latency = sum over layers of ``MACs * cycles_per_mac[op] + elements *
cycles_per_element + layer_overhead_cycles`` divided by the clock, with the
patch stage's recomputed MACs included (and one call per layer per patch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, List, Mapping

import networkx as nx
import numpy as np

from .ir import CONV_OPS

__all__ = ["DeviceProfile", "load_profile", "PROFILES", "flash_bytes", "estimate_latency_ms"]

PROFILES = ("stm32f412", "stm32f746", "stm32h743", "mcu64k")

#: Flash taken by the runtime (kernels, requantisation helpers, startup) and
#: per generated layer call; estimates for Thumb-2 code at -O2.
CODE_BYTES_BASE = 6 * 1024
CODE_BYTES_PER_LAYER = 320


@dataclass(frozen=True)
class DeviceProfile:
    """One microcontroller: memories, clock and kernel throughput."""

    device: str
    sram_kb: float
    flash_kb: float
    clock_mhz: float
    cycles_per_mac: Mapping[str, float] = field(default_factory=dict)
    cycles_per_element: float = 2.0
    layer_overhead_cycles: float = 2000.0
    core: str = ""

    def __post_init__(self) -> None:
        missing = [op for op in ("conv", "pwconv", "dwconv", "linear") if op not in self.cycles_per_mac]
        if missing:
            raise ValueError(f"device profile {self.device!r}: cycles_per_mac lacks {missing}")
        for key in ("sram_kb", "flash_kb", "clock_mhz"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"device profile {self.device!r}: {key} must be > 0, got {getattr(self, key)!r}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "DeviceProfile":
        known = {"device", "sram_kb", "flash_kb", "clock_mhz", "cycles_per_mac", "cycles_per_element", "layer_overhead_cycles", "core"}
        return cls(**{k: (dict(v) if k == "cycles_per_mac" else v) for k, v in cfg.items() if k in known})


def load_profile(name: str) -> DeviceProfile:
    """The profile shipped as ``conf/backend/<name>.yaml``."""
    from omegaconf import OmegaConf

    if name not in PROFILES:
        raise ValueError(f"unknown device profile {name!r}; shipped profiles: {list(PROFILES)}")
    text = resources.files("hwaml_tinyengine.conf.backend").joinpath(f"{name}.yaml").read_text()
    cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    return DeviceProfile.from_mapping(cfg)  # type: ignore[arg-type]


def flash_breakdown(g: nx.DiGraph) -> Dict[str, int]:
    """Bytes of constants (int8 weights; int32 bias and multiplier, int8 shift
    per output channel) and the code estimate."""
    weights = params = layers = 0
    for n in g.graph["order"]:
        d = g.nodes[n]
        if d["op"] == "input":
            continue
        layers += 1
        if d["op"] in CONV_OPS or d["op"] == "linear":
            weights += int(np.prod(d["weight"].shape))
            params += int(d["weight"].shape[0]) * (4 + 4 + 1)
    code = CODE_BYTES_BASE + CODE_BYTES_PER_LAYER * layers
    return {"weights": weights, "per_channel_params": params, "code": code}


def flash_bytes(g: nx.DiGraph) -> int:
    return int(sum(flash_breakdown(g).values()))


def estimate_latency_ms(plan_or_graph: Any, profile: DeviceProfile) -> float:
    """Latency of one inference on ``profile`` for a :class:`MemoryPlan` (patch
    recomputation included) or a bare IR graph (layer by layer)."""
    from .memory_planner import MemoryPlan, plan_layer_by_layer, work_per_layer

    plan = plan_or_graph if isinstance(plan_or_graph, MemoryPlan) else plan_layer_by_layer(plan_or_graph)
    g = plan.graph
    cycles = 0.0
    for n, (macs, elems) in work_per_layer(plan).items():
        op = g.nodes[n]["op"]
        calls = plan.patch.n**2 if plan.patch is not None and n in plan.patch.layers else 1
        cycles += macs * float(profile.cycles_per_mac.get(op, 0.0)) + elems * profile.cycles_per_element + calls * profile.layer_overhead_cycles
    return cycles / (profile.clock_mhz * 1e3)


def per_layer_latency_ms(plan: Any, profile: DeviceProfile) -> List[Dict[str, Any]]:
    from .memory_planner import work_per_layer

    g = plan.graph
    rows = []
    for n, (macs, elems) in work_per_layer(plan).items():
        op = g.nodes[n]["op"]
        cyc = macs * float(profile.cycles_per_mac.get(op, 0.0)) + elems * profile.cycles_per_element + profile.layer_overhead_cycles
        rows.append({"layer": n, "op": op, "macs": macs, "latency_ms": cyc / (profile.clock_mhz * 1e3)})
    return rows
