"""Whole-network SRAM planning: lifetimes, in-place depthwise, arena placement
and patch-based inference.

TinyEngine plans memory over the whole network instead of layer by layer
(MCUNet, NeurIPS'20) and MCUNetV2 (NeurIPS'21) runs the memory-heavy first stage
patch by patch. This module does both:

1. **Lifetimes.** Layers run in topological order (one *step* each). A tensor
   lives from the step that produces it to the last step that reads it; the
   network input lives from step 0 and the output to the end.
2. **In-place depthwise convolution.** A depthwise layer whose input has no
   other reader writes its output over its input, channel by channel (each
   output row once the input rows it lands on are in the kernel's row ring, so
   no temporary). Input and output then share one buffer.
3. **Kernel buffers.** A k x k convolution (k > 1) uses an int16 im2col buffer of
   ``k*k*C_in`` entries; a pointwise layer an int16 column of two pixels
   (``4*C_in`` bytes, the DSP kernel); a depthwise layer a ring of K+1 padded
   int16 input rows (:func:`dw_scratch_layout`). They live only during their
   layer and are placed in the arena too.
4. **Arena placement.** Buffers are placed by greedy first-fit in decreasing
   size (the offline planner of TFLite Micro), and also in order of first use;
   the smaller arena wins. Offsets are 4-byte aligned.
5. **Patch-based inference.** For every valid split layer (a layer such that
   only its output leaves the prefix of the network ending there, and every layer
   of the prefix is spatially local) and every patch grid n x n, the receptive
   field of each output patch is traced backward to every tensor of the prefix;
   each patch computes exactly those regions (overlaps are recomputed), writing
   its part of the split layer's full output. Per-patch tiles replace full
   tensors in the arena; the recomputed MACs are counted. The plan with the
   smallest arena whose recomputation stays under ``max_overhead`` (a fraction
   of the network's MACs) is chosen, or no patching when it does not help.

The layer-by-layer baseline (:func:`plan_layer_by_layer`) uses the same kernels
and placement without in-place updates or patches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import networkx as nx

from .flash import flash_bytes
from .ir import SPATIAL_OPS, elements_of, inputs_of, macs_of

__all__ = ["Buffer", "PatchPlan", "MemoryPlan", "plan_memory", "plan_layer_by_layer", "place_buffers", "patch_candidates", "trace_patches", "live_overlaps", "work_per_layer", "peak_live_bytes", "layer_by_layer_bytes", "ALIGN"]

log = logging.getLogger(__name__)

ALIGN = 4
Region = Tuple[int, int, int, int]  # y0, y1, x0, x1 (half open) in full-tensor coordinates


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    """One allocation in the arena: a tensor (or tensors sharing memory in place)
    or a kernel scratch buffer, live over steps ``[start, end]``."""

    name: str
    size: int
    start: int
    end: int
    kind: str = "tensor"  # "tensor" | "scratch"
    members: List[str] = field(default_factory=list)
    offset: int = -1

    def overlaps(self, other: "Buffer") -> bool:
        return not (self.end < other.start or other.end < self.start)


@dataclass
class PatchPlan:
    """Patch-based execution of the first stage."""

    split: str  #: last layer of the patch stage; its full output is assembled
    n: int  #: the output of ``split`` is cut into n x n patches
    layers: List[str]  #: layers run per patch, in order
    regions: Dict[str, List[Region]]  #: per tensor, the region each patch computes (or reads)
    stage_macs: int  #: MACs of the patch stage computed once, layer by layer
    patched_macs: int  #: MACs of the patch stage summed over patches (with overlaps)

    @property
    def recompute_macs(self) -> int:
        return self.patched_macs - self.stage_macs


@dataclass
class MemoryPlan:
    """Where every tensor and scratch buffer lives, and what it costs."""

    arena_bytes: int
    buffers: List[Buffer]
    tensor_buffer: Dict[str, str]  #: tensor -> buffer name
    scratch: Dict[str, str]  #: layer -> scratch buffer name
    steps: List[str]  #: layer execution order (the patch stage once)
    inplace: List[str]  #: depthwise layers computed in place
    patch: Optional[PatchPlan]
    macs: int  #: total MACs including patch recomputation
    base_macs: int  #: MACs of plain layer-by-layer execution
    per_layer: List[Dict[str, Any]]  #: live bytes at every step
    graph: Any = None
    #: constants + code estimate (see :mod:`.flash`); window tables one row per layer, so the figure
    #: does not depend on the patch plan (the patch stage's extra rows, ``flash_breakdown(g, patch)``,
    #: are 0.2-0.6 % of a tinynas network's Flash)
    flash_bytes: int = 0

    @property
    def flash_kb(self) -> float:
        return self.flash_bytes / 1024.0

    @property
    def peak_sram_bytes(self) -> int:
        return self.arena_bytes

    @property
    def peak_sram_kb(self) -> float:
        return self.arena_bytes / 1024.0

    def offset(self, tensor: str) -> int:
        return self._buf(self.tensor_buffer[tensor]).offset

    def scratch_offset(self, layer: str) -> Optional[int]:
        name = self.scratch.get(layer)
        return None if name is None else self._buf(name).offset

    def _buf(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def region(self, tensor: str, patch: int) -> Region:
        """The region of ``tensor`` held in its buffer during ``patch`` (the
        full tensor outside the patch stage)."""
        if self.patch is not None and tensor in self.patch.regions and tensor != self.patch.split and tensor != self.graph.graph["input"]:
            return self.patch.regions[tensor][patch]
        _, h, w = self.graph.nodes[tensor]["shape"]
        return (0, h, 0, w)

    def summary(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "peak_sram_kb": round(self.peak_sram_kb, 3),
            "macs": self.macs,
            "inplace_depthwise": len(self.inplace),
            "peak_layer": max(self.per_layer, key=lambda r: r["live_bytes"])["layer"] if self.per_layer else None,
        }
        if self.patch is not None:
            out.update(
                patch_split=self.patch.split,
                patch_grid=f"{self.patch.n}x{self.patch.n}",
                recompute_macs=self.patch.recompute_macs,
                recompute_overhead=round(self.patch.recompute_macs / max(1, self.base_macs), 4),
            )
        return out

    def table(self) -> str:
        """Per-layer breakdown as text: live tensor bytes, scratch, the peak."""
        rows = [f"{'step':>4} {'layer':<40} {'op':<15} {'live KB':>9} {'scratch KB':>10}"]
        for i, r in enumerate(self.per_layer):
            tag = " (per patch)" if r.get("patch") else ""
            rows.append(f"{i:>4} {r['layer'][:40]:<40} {r['op'] + tag:<15} {r['live_bytes'] / 1024:9.2f} {r['scratch_bytes'] / 1024:10.2f}")
        rows.append(f"arena: {self.arena_bytes} bytes ({self.peak_sram_kb:.2f} KB)")
        return "\n".join(rows)


# ---------------------------------------------------------------------------
# placement
# ---------------------------------------------------------------------------


def _first_fit(buffers: Sequence[Buffer], order: Sequence[int]) -> Tuple[int, List[int]]:
    offsets = [-1] * len(buffers)
    placed: List[int] = []
    for i in order:
        b = buffers[i]
        size = _align(b.size)
        busy = sorted((offsets[j], offsets[j] + _align(buffers[j].size)) for j in placed if buffers[j].overlaps(b))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, hi)
        offsets[i] = off
        placed.append(i)
    arena = max((offsets[i] + _align(buffers[i].size) for i in range(len(buffers))), default=0)
    return arena, offsets


def place_buffers(buffers: List[Buffer]) -> int:
    """Assign arena offsets (no two buffers live at the same step overlap);
    returns the arena size in bytes."""
    idx = list(range(len(buffers)))
    by_size = sorted(idx, key=lambda i: (-buffers[i].size, buffers[i].start, buffers[i].name))
    by_start = sorted(idx, key=lambda i: (buffers[i].start, -buffers[i].size, buffers[i].name))
    best = min((_first_fit(buffers, o) for o in (by_size, by_start)), key=lambda r: r[0])
    for b, off in zip(buffers, best[1]):
        b.offset = off
    return best[0]


# ---------------------------------------------------------------------------
# receptive fields and patches
# ---------------------------------------------------------------------------


def _input_region(g: nx.DiGraph, n: str, r: Region, src: str) -> Region:
    d = g.nodes[n]
    _, h, w = g.nodes[src]["shape"]
    y0, y1, x0, x1 = r
    if d["op"] in ("conv", "pwconv", "dwconv", "avgpool"):
        k, s, p = d["kernel"], d["stride"], d.get("padding", 0)
        y0, y1 = y0 * s - p, (y1 - 1) * s - p + k
        x0, x1 = x0 * s - p, (x1 - 1) * s - p + k
    return (max(0, y0), min(h, y1), max(0, x0), min(w, x1))


def _union(a: Optional[Region], b: Region) -> Region:
    if a is None:
        return b
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def _area(r: Region) -> int:
    return max(0, r[1] - r[0]) * max(0, r[3] - r[2])


def patch_candidates(g: nx.DiGraph) -> List[Tuple[str, List[str]]]:
    """Valid split layers with their patch stage (the prefix ending there)."""
    order = [n for n in g.graph["order"] if g.nodes[n]["op"] != "input"]
    out = []
    prefix: List[str] = []
    for n in order:
        if g.nodes[n]["op"] not in SPATIAL_OPS:
            break
        prefix.append(n)
        inside = set(prefix) | {g.graph["input"]}
        crossing = [m for m in prefix if any(s not in inside for s in g.successors(m))]
        if crossing != [n] or g.nodes[n]["shape"][1] < 2 or n == g.graph["output"]:
            continue
        out.append((n, list(prefix)))
    return out


def trace_patches(g: nx.DiGraph, split: str, layers: Sequence[str], n: int) -> Dict[str, List[Region]]:
    """Backward receptive-field trace: for each of the n x n output patches of
    ``split``, the region of every tensor of the stage (and the input) needed."""
    _, h, w = g.nodes[split]["shape"]
    ys = [round(i * h / n) for i in range(n + 1)]
    xs = [round(i * w / n) for i in range(n + 1)]
    stage = set(layers)
    regions: Dict[str, List[Region]] = {}
    for py in range(n):
        for px in range(n):
            need: Dict[str, Region] = {split: (ys[py], ys[py + 1], xs[px], xs[px + 1])}
            for m in reversed(layers):
                r = need[m]
                for src in inputs_of(g, m):
                    need[src] = _union(need.get(src), _input_region(g, m, r, src))
            for t, r in need.items():
                if t in stage or t == g.graph["input"]:
                    regions.setdefault(t, []).append(r)
    return regions


# ---------------------------------------------------------------------------
# the planner
# ---------------------------------------------------------------------------


def _bytes(g: nx.DiGraph, t: str, region: Optional[Region] = None) -> int:
    c, h, w = g.nodes[t]["shape"]
    return int(c * (h * w if region is None else _area(region)))


def dw_scratch_layout(g: nx.DiGraph, n: str, patch: Optional["PatchPlan"], inplace: bool) -> Tuple[int, int]:
    """Scratch of a depthwise layer (te_dwconv.h): ``(tmp_bytes, ring_bytes)``.
    ``tmp``: 0 (an in-place layer writes each output row straight over its
    input once the rows it lands on are in the ring; no channel buffer);
    ``ring``: K + 1 int16 rows of the padded input window (the K rows of the
    current output row and one of padding), each ``(tile width - 1) * stride + K``
    entries rounded up to even."""
    d = g.nodes[n]
    k, s = d["kernel"], d["stride"]
    w = d["shape"][2]
    width = max(r[3] - r[2] for r in patch.regions[n]) if patch is not None and n in patch.layers else w
    row = ((width - 1) * s + k + 1) // 2 * 2
    del inplace  # the same scratch either way
    return 0, 2 * (k + 1) * row


def _scratch_bytes(g: nx.DiGraph, n: str, out_area: int, inplace: bool, patch: Optional["PatchPlan"] = None) -> int:
    d = g.nodes[n]
    if d["op"] == "conv":
        cin = g.nodes[inputs_of(g, n)[0]]["shape"][0]
        return 2 * d["kernel"] ** 2 * cin
    if d["op"] == "pwconv":
        # the DSP kernel's int16 column of two pixels (te_pwconv.h): 2 x 2 x (cin rounded down to 4) bytes
        cin = g.nodes[inputs_of(g, n)[0]]["shape"][0]
        return 4 * (cin // 4 * 4)
    if d["op"] == "dwconv":
        return sum(dw_scratch_layout(g, n, patch, inplace))
    return 0


def _build(g: nx.DiGraph, inplace_ok: bool, patch: Optional[PatchPlan]) -> MemoryPlan:
    inp, outp = g.graph["input"], g.graph["output"]
    order = [n for n in g.graph["order"] if n != inp]
    step = {n: i for i, n in enumerate(order)}
    last = len(order) - 1
    stage = set(patch.layers) if patch else set()
    stage_end = len(patch.layers) - 1 if patch else -1

    def tile_bytes(t: str) -> int:
        # tiles of the patch stage hold the largest region any patch needs
        if patch is not None and t in stage and t != patch.split:
            return max(_bytes(g, t, r) for r in patch.regions[t])
        return _bytes(g, t)

    def tile_area(t: str) -> int:
        if patch is not None and t in stage and t != patch.split:
            return max(_area(r) for r in patch.regions[t])
        return _bytes(g, t) // g.nodes[t]["shape"][0]

    start: Dict[str, int] = {inp: 0}
    end: Dict[str, int] = {}
    for n in order:
        start[n] = step[n]
    for t in [inp] + order:
        readers = [step[s] for s in g.successors(t)]
        end[t] = max(readers) if readers else start[t]
    end[outp] = last
    if patch is not None:
        # every patch reads the input and writes the split output: both stay for the whole stage
        start[patch.split] = 0
        end[inp] = max(end[inp], stage_end)

    inplace: List[str] = []
    owner: Dict[str, str] = {t: t for t in [inp] + order}
    if inplace_ok:
        for n in order:
            d = g.nodes[n]
            if d["op"] != "dwconv":
                continue
            src = inputs_of(g, n)[0]
            if len(list(g.successors(src))) != 1 or n == outp:
                continue
            if patch is not None and n == patch.split:
                continue  # writes into the assembled full output
            if patch is not None and n in stage:
                pairs = zip(patch.regions[n], patch.regions[src]) if src != inp else []
                if src == inp or any(_area(o) > _area(i) for o, i in pairs):
                    continue
            elif tile_bytes(n) > tile_bytes(src):
                continue
            inplace.append(n)
            owner[n] = owner[src]

    groups: Dict[str, List[str]] = {}
    for t in [inp] + order:
        groups.setdefault(owner[t], []).append(t)
    buffers: List[Buffer] = []
    tensor_buffer: Dict[str, str] = {}
    for root, members in groups.items():
        b = Buffer(
            f"t_{root}",
            max(tile_bytes(t) for t in members),
            min(start[t] for t in members),
            max(end[t] for t in members),
            "tensor",
            members,
        )
        buffers.append(b)
        for t in members:
            tensor_buffer[t] = b.name
    scratch: Dict[str, str] = {}
    for n in order:
        size = _scratch_bytes(g, n, tile_area(n), n in inplace, patch)
        if size:
            buffers.append(Buffer(f"s_{n}", size, step[n], step[n], "scratch", [n]))
            scratch[n] = f"s_{n}"
    arena = place_buffers(buffers)

    per_layer = []
    for n in order:
        i = step[n]
        live = [b for b in buffers if b.start <= i <= b.end]
        per_layer.append(
            {
                "layer": n,
                "op": g.nodes[n]["op"],
                "live_bytes": int(sum(b.size for b in live)),
                "scratch_bytes": int(sum(b.size for b in live if b.kind == "scratch")),
                "tensors": [b.name for b in live if b.kind == "tensor"],
                "inplace": n in inplace,
                "patch": n in stage,
            }
        )
    base = int(sum(macs_of(g, n) for n in order))
    macs = base + (patch.recompute_macs if patch else 0)
    return MemoryPlan(arena, buffers, tensor_buffer, scratch, order, inplace, patch, macs, base, per_layer, g, flash_bytes(g))


def _patch_plan(g: nx.DiGraph, split: str, layers: List[str], n: int) -> PatchPlan:
    regions = trace_patches(g, split, layers, n)
    stage_macs = sum(macs_of(g, m) for m in layers)
    patched = 0
    for m in layers:
        for r in regions[m]:
            patched += macs_of(g, m, (r[1] - r[0], r[3] - r[2]))
    return PatchPlan(split, n, list(layers), regions, int(stage_macs), int(patched))


def plan_memory(
    g: nx.DiGraph,
    patch: Any = True,
    inplace: bool = True,
    max_overhead: float = 0.3,
    max_patches: int = 8,
    split: Optional[str] = None,
    n_patches: Optional[int] = None,
) -> MemoryPlan:
    """Plan the arena of an IR graph.

    :param patch: ``True`` to search split layer and patch count (keeping the
        plain plan when patching does not lower the peak), ``False`` for none.
    :param max_overhead: largest recomputation allowed, as a fraction of the
        network's MACs.
    :param split, n_patches: force a split layer and/or patch grid.
    """
    best = _build(g, inplace, None)
    if not patch:
        return best
    cands = patch_candidates(g)
    if split is not None:
        cands = [c for c in cands if c[0] == split]
        if not cands:
            valid = [c[0] for c in patch_candidates(g)]
            raise ValueError(f"layer {split!r} cannot end a patch stage; valid split layers: {valid}")
    forced = split is not None or n_patches is not None
    if forced:
        best = None  # type: ignore[assignment]
    for s, layers in cands:
        _, h, w = g.nodes[s]["shape"]
        grids = [n_patches] if n_patches else range(2, min(h, w, max_patches) + 1)
        for n in grids:
            pp = _patch_plan(g, s, layers, int(n))
            over = pp.recompute_macs / max(1, best.base_macs if best is not None else sum(macs_of(g, m) for m in g.nodes))
            if over > max_overhead and not forced:
                continue
            plan = _build(g, inplace, pp)
            if best is None or (plan.arena_bytes, plan.macs) < (best.arena_bytes, best.macs):
                best = plan
    if best is None:
        raise ValueError(f"no patch plan for split={split!r} n_patches={n_patches!r}")
    log.debug("memory plan: %s", best.summary())
    return best


def plan_layer_by_layer(g: nx.DiGraph) -> MemoryPlan:
    """The baseline: layer-by-layer execution, no in-place, no patches (buffers
    placed by the same first-fit as the planner, so its arena can exceed the
    bytes live at once: see :func:`layer_by_layer_bytes`)."""
    return _build(g, False, None)


def peak_live_bytes(plan: MemoryPlan) -> int:
    """The most bytes live at any step of a plan (tensors and kernel buffers): the
    arena of a placement without fragmentation, a lower bound for any placer."""
    return int(max((r["live_bytes"] for r in plan.per_layer), default=0))


def layer_by_layer_bytes(g: nx.DiGraph) -> int:
    """The non-fragmenting layer-by-layer baseline: the most bytes live at any step
    of the layer-by-layer schedule (no in-place, no patches)."""
    return peak_live_bytes(plan_layer_by_layer(g))


def live_overlaps(plan: MemoryPlan) -> List[Tuple[str, str]]:
    """Pairs of buffers that are live at the same step and share arena bytes
    (always empty for a correct plan; used by tests and as a self-check)."""
    bad = []
    bs = plan.buffers
    for i in range(len(bs)):
        for j in range(i + 1, len(bs)):
            a, b = bs[i], bs[j]
            if a.overlaps(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                bad.append((a.name, b.name))
    return bad


def work_per_layer(plan: MemoryPlan) -> Dict[str, Tuple[int, int]]:
    """(MACs, elementwise ops) of every layer, patch recomputation included."""
    g = plan.graph
    out = {}
    for n in plan.steps:
        if plan.patch is not None and n in plan.patch.regions and n in plan.patch.layers:
            macs = sum(macs_of(g, n, (r[1] - r[0], r[3] - r[2])) for r in plan.patch.regions[n])
            elems = sum(elements_of(g, n, (r[1] - r[0], r[3] - r[2])) for r in plan.patch.regions[n])
        else:
            macs, elems = macs_of(g, n), elements_of(g, n)
        out[n] = (int(macs), int(elems))
    return out
