"""Architecture parameters of the simulated accelerator, its energy table and area proxy.

Defaults follow the SpArch paper (Zhang, Wang, Han and Dally, HPCA 2020) where it
gives a number and are labelled assumptions where it does not:

* clock 1 GHz and HBM at 128 GB/s (16 channels x 8 GB/s) -- paper;
* a 64-way merge tree whose top merger is a 16 x 16 comparator array -- paper;
* row-prefetcher buffer of 1024 lines x 48 elements -- paper;
* 16 multipliers, a lookahead of 8192 B-row accesses, 12-byte elements (fp64
  value + int32 index) -- assumptions of this simulator;
* per-access energies: HBM2 3.9 pJ/bit (O'Connor et al., MICRO 2017), on-chip SRAM
  about 10 pJ per 64-bit access and a 64-bit floating-point multiply about 20 pJ
  (Horowitz, ISSCC 2014, 45 nm) -- order-of-magnitude figures, not measured;
* the area proxy adds comparators, merger FIFOs, multipliers, SRAM and HBM PHY
  channels with per-unit areas whose sum for the defaults is about 28.5 mm^2, the
  total the paper reports in 40 nm; the split between units is an assumption.

Every field can be set from Hydra config; a wrong key or value raises
:class:`ArchConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Mapping

__all__ = ["ArchConfigError", "EnergyTable", "AreaTable", "SparchConfig", "area_breakdown"]


class ArchConfigError(ValueError):
    """An architecture parameter is wrong; ``key`` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event, in picojoules."""

    dram_pj_per_byte: float = 31.2  # HBM2 ~3.9 pJ/bit
    sram_pj_per_byte: float = 1.25  # ~10 pJ per 64-bit word
    multiply_pj: float = 20.0  # fp64 multiply
    merge_pj_per_element_level: float = 1.5  # one comparator step + accumulate, per tree level


@dataclass(frozen=True)
class AreaTable:
    """Per-unit areas (mm^2, 40 nm) of the area proxy."""

    comparator_mm2: float = 0.012
    merger_fifo_mm2: float = 0.06  # input FIFOs and control of one merge-tree node
    multiplier_mm2: float = 0.12
    sram_mm2_per_kib: float = 0.012
    phy_mm2_per_channel: float = 0.45  # one 8 GB/s HBM channel's PHY and controller
    channel_gbps: float = 8.0
    fixed_mm2: float = 2.35  # A-column fetcher, schedulers, partial-matrix writer


@dataclass(frozen=True)
class SparchConfig:
    """One accelerator design point plus the technique switches of the ablation."""

    clock_ghz: float = 1.0
    bandwidth_gbps: float = 128.0
    merge_ways: int = 64
    merger_width: int = 16
    multipliers: int = 16
    buffer_lines: int = 1024
    line_elems: int = 48
    lookahead: int = 8192
    element_bytes: int = 12
    pipeline_latency: int = 4  # cycles per merge-tree level to fill the pipeline
    # technique switches (ablation: condensed -> +huffman -> +prefetcher)
    condensed: bool = True
    huffman: bool = True
    prefetcher: bool = True
    replacement: str = "belady"  # prefetcher's policy: belady (lookahead, near-optimal) or lru
    buffer_without_prefetcher: str = "lru"  # prefetcher off: same buffer as a demand LRU cache, or "none"
    energy: EnergyTable = field(default_factory=EnergyTable)
    area: AreaTable = field(default_factory=AreaTable)

    def __post_init__(self) -> None:
        positive = ("clock_ghz", "bandwidth_gbps", "merger_width", "multipliers", "buffer_lines", "line_elems", "element_bytes")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ArchConfigError(key, f"must be > 0, got {getattr(self, key)!r}")
        if self.merge_ways < 2:
            raise ArchConfigError("merge_ways", f"must be >= 2, got {self.merge_ways}")
        if self.merge_ways & (self.merge_ways - 1):
            raise ArchConfigError("merge_ways", f"must be a power of two (a binary merge tree), got {self.merge_ways}")
        if self.merger_width & (self.merger_width - 1):
            raise ArchConfigError("merger_width", f"must be a power of two, got {self.merger_width}")
        if self.lookahead < 0:
            raise ArchConfigError("lookahead", f"must be >= 0 (0 = unlimited), got {self.lookahead}")
        if self.pipeline_latency < 0:
            raise ArchConfigError("pipeline_latency", f"must be >= 0, got {self.pipeline_latency}")
        if self.replacement not in ("belady", "lru"):
            raise ArchConfigError("replacement", f"must be 'belady' or 'lru', got {self.replacement!r}")
        if self.buffer_without_prefetcher not in ("lru", "none"):
            raise ArchConfigError("buffer_without_prefetcher", f"must be 'lru' or 'none', got {self.buffer_without_prefetcher!r}")

    # -- construction from config -------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, base: "SparchConfig | None" = None, strict: bool = True) -> "SparchConfig":
        """Build from a (possibly nested) mapping; unknown keys raise when ``strict``."""
        base = base or cls()
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        updates: Dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                if strict:
                    raise ArchConfigError(key, f"unknown architecture parameter; known: {sorted(known)}")
                continue
            if key in ("energy", "area"):
                table = getattr(base, key)
                sub = {f.name for f in fields(table)}
                value = dict(value or {})
                for k in value:
                    if k not in sub:
                        raise ArchConfigError(f"{key}.{k}", f"unknown; known: {sorted(sub)}")
                updates[key] = dataclasses.replace(table, **{k: float(v) for k, v in value.items()})
                continue
            default = getattr(base, key)
            updates[key] = _coerce(key, value, default)
        return dataclasses.replace(base, **updates)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    # -- derived quantities ----------------------------------------------------------

    @property
    def bytes_per_cycle(self) -> float:
        return self.bandwidth_gbps / self.clock_ghz

    @property
    def tree_levels(self) -> int:
        return int(math.log2(self.merge_ways))

    @property
    def buffer_bytes(self) -> int:
        return self.buffer_lines * self.line_elems * self.element_bytes

    def comparators(self) -> int:
        """Comparators of the merge tree: level l (root = 0) has 2**l mergers, each
        a w x w comparator array with w = max(1, merger_width / 2**l)."""
        total = 0
        for level in range(self.tree_levels):
            width = max(1, self.merger_width >> level)
            total += (1 << level) * width * width
        return total

    def area_mm2(self) -> float:
        return float(sum(area_breakdown(self).values()))


def area_breakdown(cfg: SparchConfig) -> Dict[str, float]:
    """Area proxy per unit (mm^2); the row buffer counts unless it is switched off."""
    a = cfg.area
    has_buffer = cfg.prefetcher or cfg.buffer_without_prefetcher != "none"
    buffer_kib = cfg.buffer_bytes / 1024.0 if has_buffer else 0.0
    channels = math.ceil(cfg.bandwidth_gbps / a.channel_gbps)
    return {
        "comparators": cfg.comparators() * a.comparator_mm2,
        "merger_fifos": (cfg.merge_ways - 1) * a.merger_fifo_mm2,
        "multipliers": cfg.multipliers * a.multiplier_mm2,
        "prefetch_buffer": buffer_kib * a.sram_mm2_per_kib,
        "hbm_phy": channels * a.phy_mm2_per_channel,
        "fixed": a.fixed_mm2,
    }


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ArchConfigError(key, f"expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise ArchConfigError(key, f"expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ArchConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ArchConfigError(key, f"expected a string, got {value!r}")
        return value
    return value
