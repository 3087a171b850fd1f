"""MCU device profiles and the latency and energy models.

A :class:`DeviceProfile` holds what costing a model on one microcontroller
needs: SRAM and Flash sizes, the core clock, cycles per multiply-accumulate by
layer type for int8 kernels (plus cycles per element for adds, pooling and
copies, and a fixed overhead per layer call), and the active power while the
model runs. The shipped profiles are :data:`PROFILES`; a backend config names
one (``profile: stm32f746``) and may change any field through ``overrides``
(:meth:`DeviceProfile.with_overrides`, checked strictly).

The cycle figures are estimates of CMSIS-NN/TinyEngine-class kernels on
Cortex-M4 (SIMD ``SMLAD``, two 16-bit MACs per cycle at best) and Cortex-M7
(dual issue, caches); the power figures are datasheet orders of magnitude of the
active run power. Neither is measured on hardware.

Latency (``latency_model: measured``, the default) = the instructions the
generated firmware executes, predicted per layer by the model fitted to QEMU
instruction counts (:mod:`.latency`: requantisation, padding borders, patch
recomputation and per-call costs included), x ``cycles_per_instruction``, /
the clock. The cycles per instruction are assumptions per core, not board
measurements: Cortex-M4 1.2 (the Cortex-M4 TRM's timings: one cycle for ALU,
MAC and SIMD instructions such as SMLAD/SXTB16, two for an isolated load and one
for each pipelined load after it, one to three extra for a taken branch; the
kernels are load- and MAC-heavy with few branches); Cortex-M7 0.8 (dual issue:
EEMBC CoreMark/MHz 5.01 for the M7 against 3.42 for the M4 gives 0.68 x the M4's
cycles for the same instructions, rounded up since the kernels' load stream
limits pairing). ``latency_model: per_mac`` keeps the older estimate: sum over
layers of ``MACs * cycles_per_mac[op] + elements * cycles_per_element +
layer_overhead_cycles`` / clock. Energy = latency x ``power_mw``.

Imports go one way: :mod:`.ir` <- :mod:`.flash` <- :mod:`.memory_planner` <-
this module (Flash accounting lives in :mod:`.flash`; ``flash_bytes`` and
``flash_breakdown`` are re-exported here).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Union

import networkx as nx

from .flash import CODE_BYTES_BASE, CODE_BYTES_PER_LAYER, flash_breakdown, flash_bytes
from .memory_planner import MemoryPlan, plan_layer_by_layer, work_per_layer

__all__ = [
    "DeviceProfile",
    "load_profile",
    "PROFILES",
    "MAC_OPS",
    "flash_bytes",
    "flash_breakdown",
    "estimate_latency_ms",
    "estimate_energy_mj",
    "per_layer_latency_ms",
    "CODE_BYTES_BASE",
    "CODE_BYTES_PER_LAYER",
]

#: layer types with a cycles-per-MAC figure (every profile gives all four)
MAC_OPS = ("conv", "pwconv", "dwconv", "linear")

_NUMBERS = ("sram_kb", "flash_kb", "clock_mhz", "power_mw", "cycles_per_element", "layer_overhead_cycles", "cycles_per_instruction")
#: latency models (``latency_model``)
LATENCY_MODELS = ("measured", "per_mac")


@dataclass(frozen=True)
class DeviceProfile:
    """One microcontroller: memories, clock, kernel throughput and active power."""

    device: str
    sram_kb: float
    flash_kb: float
    clock_mhz: float
    #: active power while the model runs (for ``energy_mj``); an estimate
    power_mw: float
    cycles_per_mac: Mapping[str, float] = field(default_factory=dict)
    cycles_per_element: float = 2.0
    layer_overhead_cycles: float = 2000.0
    core: str = ""
    #: core cycles per executed instruction (``latency_model: measured``); an assumption per core
    cycles_per_instruction: float = 1.2
    #: ``measured`` (instructions fitted to QEMU counts x cycles_per_instruction) or ``per_mac``
    latency_model: str = "measured"

    def __post_init__(self) -> None:
        missing = [op for op in MAC_OPS if op not in self.cycles_per_mac]
        if missing:
            raise ValueError(f"device profile {self.device!r}: cycles_per_mac lacks {missing}")
        extra = sorted(set(self.cycles_per_mac) - set(MAC_OPS))
        if extra:
            raise ValueError(f"device profile {self.device!r}: cycles_per_mac has unknown layer types {extra} (known: {list(MAC_OPS)})")
        for key in ("sram_kb", "flash_kb", "clock_mhz", "power_mw"):
            if not float(getattr(self, key)) > 0:
                raise ValueError(f"device profile {self.device!r}: {key} must be > 0, got {getattr(self, key)!r}")
        if self.latency_model not in LATENCY_MODELS:
            raise ValueError(f"device profile {self.device!r}: latency_model must be one of {list(LATENCY_MODELS)}, got {self.latency_model!r}")
        if not float(self.cycles_per_instruction) > 0:
            raise ValueError(f"device profile {self.device!r}: cycles_per_instruction must be > 0, got {self.cycles_per_instruction!r}")
        for key in ("cycles_per_element", "layer_overhead_cycles"):
            if float(getattr(self, key)) < 0:
                raise ValueError(f"device profile {self.device!r}: {key} must be >= 0, got {getattr(self, key)!r}")

    @classmethod
    def field_names(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, overrides: Optional[Mapping[str, Any]]) -> "DeviceProfile":
        """A copy with some fields changed, checked strictly.

        ``overrides`` maps field names (:meth:`field_names`) to values; an unknown
        name or a value of the wrong type raises ``ValueError`` naming the key.
        ``cycles_per_mac`` may give only some layer types: the others keep this
        profile's figures.
        """
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise ValueError(f"overrides must be a mapping of DeviceProfile fields, got {type(overrides).__name__} {overrides!r}")
        names = self.field_names()
        changes: Dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ValueError(f"overrides.{key}: not a field of DeviceProfile{hint} (valid: {', '.join(names)})")
            if key == "cycles_per_mac":
                if not isinstance(value, Mapping):
                    raise ValueError(f"overrides.cycles_per_mac: expected a mapping of layer type to cycles, got {type(value).__name__} {value!r}")
                for op, cyc in value.items():
                    if op not in MAC_OPS:
                        close = difflib.get_close_matches(str(op), MAC_OPS, n=1)
                        hint = f"; did you mean '{close[0]}'?" if close else ""
                        raise ValueError(f"overrides.cycles_per_mac.{op}: not a layer type{hint} (valid: {', '.join(MAC_OPS)})")
                    _check_number(f"overrides.cycles_per_mac.{op}", cyc)
                changes[key] = {**dict(self.cycles_per_mac), **{str(k): float(v) for k, v in value.items()}}
            elif key in _NUMBERS:
                _check_number(f"overrides.{key}", value)
                changes[key] = float(value)
            else:  # device, core, latency_model
                if not isinstance(value, str):
                    raise ValueError(f"overrides.{key}: expected a string, got {type(value).__name__} {value!r}")
                changes[key] = value
        return replace(self, **changes)


def _check_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a number, got {type(value).__name__} {value!r}")


_M4 = {"conv": 1.4, "pwconv": 1.1, "dwconv": 2.6, "linear": 1.2}
_M7 = {"conv": 0.9, "pwconv": 0.7, "dwconv": 1.7, "linear": 0.8}
#: cycles per instruction assumed per core (sources in the module docstring)
_CPI_M4, _CPI_M7 = 1.2, 0.8

#: The shipped profiles, by name (``backend=[<name>]`` selects one). Fields in
#: order: device, sram_kb, flash_kb, clock_mhz, power_mw, cycles_per_mac,
#: cycles_per_element, layer_overhead_cycles, core.
PROFILES: Dict[str, DeviceProfile] = {
    # STM32F412: Cortex-M4F at 100 MHz, 256 KB SRAM, 1 MB Flash
    "stm32f412": DeviceProfile("stm32f412", 256, 1024, 100, 37, dict(_M4), 3.0, 2000, "cortex-m4", _CPI_M4),
    # STM32F746: Cortex-M7 at 216 MHz, 320 KB SRAM, 1 MB Flash
    "stm32f746": DeviceProfile("stm32f746", 320, 1024, 216, 330, dict(_M7), 2.0, 2000, "cortex-m7", _CPI_M7),
    # STM32H743: Cortex-M7 at 480 MHz, 512 KB SRAM usable for the arena (AXI SRAM), 2 MB Flash
    "stm32h743": DeviceProfile("stm32h743", 512, 2048, 480, 420, dict(_M7), 2.0, 2000, "cortex-m7", _CPI_M7),
    # a small 64 KB-SRAM part (STM32L432-class): Cortex-M4F at 80 MHz, 64 KB SRAM, 256 KB Flash
    "mcu64k": DeviceProfile("mcu64k", 64, 256, 80, 22, dict(_M4), 3.0, 2000, "cortex-m4", _CPI_M4),
}


def load_profile(name: str, overrides: Optional[Mapping[str, Any]] = None) -> DeviceProfile:
    """The shipped profile ``name``, with ``overrides`` applied (see
    :meth:`DeviceProfile.with_overrides`)."""
    if name not in PROFILES:
        close = difflib.get_close_matches(str(name), list(PROFILES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown device profile {name!r}{hint}; shipped profiles: {list(PROFILES)}")
    return PROFILES[name].with_overrides(overrides)


def _as_plan(plan_or_graph: Union[MemoryPlan, nx.DiGraph]) -> MemoryPlan:
    return plan_or_graph if isinstance(plan_or_graph, MemoryPlan) else plan_layer_by_layer(plan_or_graph)


def estimate_latency_ms(plan_or_graph: Union[MemoryPlan, nx.DiGraph], profile: DeviceProfile) -> float:
    """Latency of one inference on ``profile`` for a :class:`MemoryPlan` (patch
    recomputation included) or a bare IR graph (layer by layer)."""
    plan = _as_plan(plan_or_graph)
    if profile.latency_model == "measured":
        from .latency import predict_instructions

        return predict_instructions(plan, profile.core or "cortex-m4") * float(profile.cycles_per_instruction) / (profile.clock_mhz * 1e3)
    g = plan.graph
    cycles = 0.0
    for n, (macs, elems) in work_per_layer(plan).items():
        op = g.nodes[n]["op"]
        calls = plan.patch.n**2 if plan.patch is not None and n in plan.patch.layers else 1
        cycles += macs * float(profile.cycles_per_mac.get(op, 0.0)) + elems * profile.cycles_per_element + calls * profile.layer_overhead_cycles
    return cycles / (profile.clock_mhz * 1e3)


def estimate_energy_mj(latency_ms: float, profile: DeviceProfile) -> float:
    """Energy of one inference: latency x active power (mW x ms = uJ)."""
    return float(latency_ms) * float(profile.power_mw) / 1000.0


def per_layer_latency_ms(plan: MemoryPlan, profile: DeviceProfile) -> List[Dict[str, Any]]:
    """One row per layer: op, MACs (patch recomputation included) and latency."""
    g = plan.graph
    rows = []
    if profile.latency_model == "measured":
        from .latency import predict_layer_instructions

        work = work_per_layer(plan)
        cpi = float(profile.cycles_per_instruction) / (profile.clock_mhz * 1e3)
        return [{"layer": r["layer"], "op": r["op"], "macs": work[r["layer"]][0], "latency_ms": r["instructions"] * cpi} for r in predict_layer_instructions(plan, profile.core or "cortex-m4")]
    for n, (macs, elems) in work_per_layer(plan).items():
        op = g.nodes[n]["op"]
        cyc = macs * float(profile.cycles_per_mac.get(op, 0.0)) + elems * profile.cycles_per_element + profile.layer_overhead_cycles
        rows.append({"layer": n, "op": op, "macs": macs, "latency_ms": cyc / (profile.clock_mhz * 1e3)})
    return rows
