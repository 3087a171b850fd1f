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

__all__ = ["ArchConfigError", "EnergyTable", "AreaTable", "OuterSpaceTable", "SparchConfig", "area_breakdown"]


class ArchConfigError(ValueError):
    """An architecture parameter is wrong; ``key`` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event, in picojoules (sources in docs/benchmarks/sparch-sim.md, "Constants")."""

    dram_pj_per_byte: float = 31.2  # HBM2 3.9 pJ/bit (O'Connor et al., MICRO 2017)
    sram_pj_per_byte: float = 1.25  # ~10 pJ per 64-bit read of a large SRAM (Horowitz, ISSCC 2014, 45 nm)
    multiply_pj: float = 20.0  # fp64 multiply (Horowitz: fp32 mult 3.7 pJ, fp64 ~4-5x)
    merge_pj_per_element_level: float = 1.5  # fp64 accumulate + FIFO move of one element at one tree level
    comparator_pj: float = 0.05  # one 32-bit compare of the comparator array (Horowitz: 32-bit add 0.1 pJ)
    fifo_pj_per_byte: float = 0.15  # small register-file FIFO access (lookahead FIFO, merger FIFOs)
    tag_lookup_pj: float = 2.0  # prefetcher tag + next-use table lookup per line access (small SRAM)
    scheduler_pj_per_op: float = 5.0  # one Huffman priority-queue operation (compare + table access)
    leakage_mw_per_mm2: float = 10.0  # static power density, 40 nm LP logic/SRAM (assumption)


@dataclass(frozen=True)
class AreaTable:
    """Per-unit areas (mm^2, 40 nm) of the area proxy (sources in the benchmark page's constants table)."""

    comparator_mm2: float = 0.012
    merger_fifo_mm2: float = 0.06  # input FIFOs and control of one merge-tree node
    multiplier_mm2: float = 0.12
    sram_mm2_per_kib: float = 0.012  # the row buffer: wide-line, banked SRAM
    phy_mm2_per_channel: float = 0.45  # one 8 GB/s HBM channel's PHY and controller
    channel_gbps: float = 8.0
    fifo_mm2_per_kib: float = 0.02  # lookahead FIFO (register-file class, ~1.7x SRAM density)
    prefetch_tag_mm2_per_line: float = 0.0002  # tag, next-use and valid bits of one buffer line + its comparator slice
    prefetch_logic_mm2: float = 0.25  # next-use priority logic, request queue, address generation
    scheduler_mm2: float = 0.15  # Huffman scheduler: size table and priority queue
    fixed_mm2: float = 0.46  # A-column fetcher, partial-matrix writer, control, NoC to HBM


@dataclass(frozen=True)
class OuterSpaceTable:
    """The OuterSPACE baseline's organisation (Pal et al., HPCA 2018)."""

    tiles: int = 16  # processing tiles
    pes_per_tile: int = 16  # PEs per tile (256 PEs)
    clock_ghz: float = 1.5
    l0_kib_per_tile: int = 16  # L0 cache / scratchpad shared by a tile's PEs over its crossbar
    bandwidth_gbps: float = 128.0  # HBM
    multiply_cycles_per_product: float = 4.0  # PE cycles per product in the multiply phase (load, fmul, store)
    merge_cycles_per_element: float = 210.0  # PE cycles per partial product in the merge phase: calibrated so the mean over the 20 stand-ins is the reported 2.9 GFLOPS
    crossbar_bytes_per_cycle_per_tile: float = 32.0  # tile crossbar to L0/L1 and HBM
    chunk_header_bytes: int = 8  # next pointer + length of one linked-list chunk of partial products

@dataclass(frozen=True)
class SparchConfig:
    """One accelerator design point plus the technique switches of the ablation."""

    clock_ghz: float = 1.0
    bandwidth_gbps: float = 128.0
    merge_ways: int = 64
    merger_width: int = 16
    merger_min_width: int = 1  # narrowest comparator array (widths halve from the root down to this)
    multipliers: int = 16
    buffer_lines: int = 1024
    line_elems: int = 48
    lookahead: int = 8192
    element_bytes: int = 12  # value + column index of one stored element
    index_bytes: int = 4  # extra index (condensed A's original column) and row ids
    pointer_bytes: int = 4  # CSR/CSC row or column pointer
    burst_bytes: int = 64  # DRAM access granularity (HBM burst); 1 disables burst rounding
    dram_latency_ns: float = 100.0  # request to first data (HBM: tRCD + tCL + controller/PHY)
    pipeline_latency: int = 4  # cycles per merge-tree level to fill the pipeline
    # technique switches (ablation: condensed -> +huffman -> +prefetcher)
    condensed: bool = True
    huffman: bool = True
    prefetcher: bool = True
    replacement: str = "belady"  # prefetcher's policy: belady (lookahead, near-optimal) or lru
    buffer_without_prefetcher: str = "lru"  # prefetcher off: same buffer as a demand LRU cache, or "none"
    huffman_sizes: str = "estimate"  # what the Huffman scheduler knows: "estimate" (products) or "oracle" (real merged sizes)
    energy: EnergyTable = field(default_factory=EnergyTable)
    area: AreaTable = field(default_factory=AreaTable)
    outerspace: OuterSpaceTable = field(default_factory=OuterSpaceTable)

    def __post_init__(self) -> None:
        positive = ("clock_ghz", "bandwidth_gbps", "merger_width", "multipliers", "buffer_lines", "line_elems", "element_bytes", "burst_bytes")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ArchConfigError(key, f"must be > 0, got {getattr(self, key)!r}")
        if self.merge_ways < 2:
            raise ArchConfigError("merge_ways", f"must be >= 2, got {self.merge_ways}")
        if self.merge_ways & (self.merge_ways - 1):
            raise ArchConfigError("merge_ways", f"must be a power of two (a binary merge tree), got {self.merge_ways}")
        if self.merger_width & (self.merger_width - 1):
            raise ArchConfigError("merger_width", f"must be a power of two, got {self.merger_width}")
        if not 1 <= self.merger_min_width <= self.merger_width or self.merger_min_width & (self.merger_min_width - 1):
            raise ArchConfigError("merger_min_width", f"must be a power of two in [1, merger_width], got {self.merger_min_width}")
        if self.lookahead < 0:
            raise ArchConfigError("lookahead", f"must be >= 0 (0 = unlimited), got {self.lookahead}")
        if self.pipeline_latency < 0:
            raise ArchConfigError("pipeline_latency", f"must be >= 0, got {self.pipeline_latency}")
        if self.replacement not in ("belady", "lru"):
            raise ArchConfigError("replacement", f"must be 'belady' or 'lru', got {self.replacement!r}")
        if self.huffman_sizes not in ("estimate", "oracle"):
            raise ArchConfigError("huffman_sizes", f"must be 'estimate' or 'oracle', got {self.huffman_sizes!r}")
        if self.index_bytes < 0 or self.pointer_bytes < 0 or self.dram_latency_ns < 0:
            raise ArchConfigError("index_bytes" if self.index_bytes < 0 else "pointer_bytes" if self.pointer_bytes < 0 else "dram_latency_ns", "must be >= 0")
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
            if key in ("energy", "area", "outerspace"):
                table = getattr(base, key)
                sub = {f.name: getattr(table, f.name) for f in fields(table)}
                if not isinstance(value, Mapping):
                    raise ArchConfigError(key, f"must be a mapping of {sorted(sub)}, got {value!r}")
                value = dict(value or {})
                for k in value:
                    if k not in sub:
                        raise ArchConfigError(f"{key}.{k}", f"unknown; known: {sorted(sub)}")
                coerced = {k: _coerce(f"{key}.{k}", v, sub[k]) for k, v in value.items()}
                for k, v in coerced.items():
                    if not v > 0 and not (key == "area" and k == "fixed_mm2" and v == 0):
                        raise ArchConfigError(f"{key}.{k}", f"must be > 0, got {v!r}")
                updates[key] = dataclasses.replace(table, **coerced)
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
    def latency_cycles(self) -> float:
        return self.dram_latency_ns * self.clock_ghz

    def merger_widths(self) -> list:
        """Comparator-array width per tree level, root (level 0) first."""
        return [max(self.merger_min_width, self.merger_width >> level) for level in range(self.tree_levels)]

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
        for width_level, width in enumerate(self.merger_widths()):
            total += (1 << width_level) * width * width
        return total

    def area_mm2(self) -> float:
        return float(sum(area_breakdown(self).values()))


def area_breakdown(cfg: SparchConfig) -> Dict[str, float]:
    """Area proxy per block (mm^2); the row buffer, its tags and the prefetch logic count
    only when present, the lookahead FIFO only with the prefetcher, the scheduler only
    with Huffman scheduling."""
    a = cfg.area
    has_buffer = cfg.condensed and (cfg.prefetcher or cfg.buffer_without_prefetcher != "none")
    buffer_kib = cfg.buffer_bytes / 1024.0 if has_buffer else 0.0
    channels = math.ceil(cfg.bandwidth_gbps / a.channel_gbps)
    window = cfg.lookahead if cfg.lookahead > 0 else cfg.buffer_lines * 8
    # a lookahead entry holds the row id and original column of one upcoming A element
    fifo_kib = window * 2 * cfg.index_bytes / 1024.0 if (cfg.prefetcher and has_buffer) else 0.0
    return {
        "comparators": cfg.comparators() * a.comparator_mm2,
        "merger_fifos": (cfg.merge_ways - 1) * a.merger_fifo_mm2,
        "multipliers": cfg.multipliers * a.multiplier_mm2,
        "prefetch_buffer": buffer_kib * a.sram_mm2_per_kib,
        "prefetch_tags": cfg.buffer_lines * a.prefetch_tag_mm2_per_line if has_buffer else 0.0,
        "prefetch_logic": a.prefetch_logic_mm2 if (cfg.prefetcher and has_buffer) else 0.0,
        "lookahead_fifo": fifo_kib * a.fifo_mm2_per_kib,
        "scheduler": a.scheduler_mm2 if cfg.huffman else 0.0,
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
