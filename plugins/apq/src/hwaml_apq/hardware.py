"""A BitFusion-style analytical accelerator model: latency and energy of a
mixed-precision network, layer by layer.

Bit Fusion (Sharma et al., ISCA 2018) builds its multiply-accumulate array
from *Fusion Units* of 16 *BitBricks* (2-bit x 2-bit multipliers). The bricks
of a unit fuse at run time, in powers of two, into 1, 2, 4, 8 or 16 fused
processing engines, so a unit performs ``16 / ((w/2) * (a/2))`` multiply-adds
per cycle for ``w``-bit weights and ``a``-bit activations with ``w, a`` in
{2, 4, 8} (one 8x8, two 8x4, four 4x4, sixteen 2x2). Operands of other widths
(6 bits) run at the next supported width (8) but are *stored and moved* at
their own width. The units form a weight-stationary systolic array of
``rows x cols`` units: the reduction dimension (input channels x kernel area)
is spread over the rows, output channels over the columns. A depth-wise
convolution reduces over the kernel area only and has one input channel per
output channel, so it fills ``kernel^2`` rows: its utilisation is poor, as on
any systolic array.

Per layer this module computes

* compute cycles = MACs / (rows x cols x engines per unit x utilisation);
* DRAM traffic: weights, input activations and outputs at their bit-widths,
  weights fetched again for every input tile when they do not fit the weight
  buffer; memory cycles = traffic / DRAM bytes per cycle;
* latency = max(compute, memory) cycles / frequency (double buffering overlaps
  the two);
* energy = BitBrick operations x energy per brick op + on-chip buffer traffic
  x SRAM energy per bit + DRAM traffic x DRAM energy per bit.

Every parameter lives in :class:`BitFusionConfig`, with its source; the
defaults are listed in the plugin README. The model reads the network a cost
backend is given (``ctx.build_model(candidate).module``): convolutions and
linear layers with their shapes, and the bit-widths of the quantized layers
(:class:`hwaml_apq.quantize.QuantConv2d`); full-precision layers run at
``default_bits`` (Bit Fusion has no floating point).

:func:`build_lut` writes the table in the reference's format (a JSON dict
``"(cin, cout, input_size, kernel, stride, padding, groups)-W{w}A{a}" ->
{"latency": ms, "energy": mJ}``) for a set of layer shapes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["BitFusionConfig", "LayerShape", "LayerCost", "layer_cost", "network_layers", "network_cost", "build_lut", "lut_key", "SUPPORTED_BITS"]

#: operand widths a Fusion Unit's bricks fuse to (powers of two of the 2-bit brick)
SUPPORTED_BITS = (2, 4, 8)


@dataclass(frozen=True)
class BitFusionConfig:
    """Parameters of the accelerator model (``config:`` of ``backend=bitfusion``).

    :param rows: Fusion Units along the reduction dimension (Bit Fusion: 32 x 16 = 512 units).
    :param cols: Fusion Units along the output channels.
    :param bricks_per_unit: BitBricks per Fusion Unit (Bit Fusion: 16).
    :param brick_bits: operand bits of one BitBrick (Bit Fusion: 2).
    :param frequency_mhz: clock (Bit Fusion's 45 nm design: 500 MHz).
    :param wbuf_kb: weight buffer (assumption of this model, sized like Bit Fusion's on-chip SRAM).
    :param ibuf_kb: input buffer (assumption).
    :param obuf_kb: output buffer (assumption).
    :param dram_bytes_per_cycle: off-chip bandwidth per cycle (assumption: 32 B/cycle = 16 GB/s at 500 MHz).
    :param e_brick_pj: energy of one 2x2-bit brick multiply-add (derived from Horowitz, ISSCC 2014,
        45 nm: 8-bit multiply 0.2 pJ + 8-bit add 0.03 pJ = 0.23 pJ over the 16 bricks of an 8x8 MAC).
    :param e_sram_pj_per_bit: on-chip buffer access (Horowitz 2014: 8 KB SRAM, 5 pJ per 32-bit read).
    :param e_dram_pj_per_bit: off-chip access (Horowitz 2014: 640 pJ per 32-bit DRAM read).
    :param accumulator_bits: width of partial sums written to the output buffer.
    :param default_bits: bits of layers that carry none (full-precision networks).
    :param batch: images per inference.
    """

    rows: int = 32
    cols: int = 16
    bricks_per_unit: int = 16
    brick_bits: int = 2
    frequency_mhz: float = 500.0
    wbuf_kb: float = 32.0
    ibuf_kb: float = 16.0
    obuf_kb: float = 16.0
    dram_bytes_per_cycle: float = 32.0
    e_brick_pj: float = 0.23 / 16
    e_sram_pj_per_bit: float = 5.0 / 32
    e_dram_pj_per_bit: float = 640.0 / 32
    accumulator_bits: int = 32
    default_bits: int = 8
    batch: int = 1

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "bricks_per_unit", "brick_bits", "accumulator_bits", "default_bits", "batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"bitfusion config.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("frequency_mhz", "wbuf_kb", "ibuf_kb", "obuf_kb", "dram_bytes_per_cycle"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"bitfusion config.{name}: must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def fused_bits(self, bits: int) -> int:
        """The operand width a fused engine runs ``bits`` at (the next power-of-two multiple of a brick)."""
        b = self.brick_bits
        while b < bits:
            b *= 2
        return b

    def bricks_per_mac(self, w_bits: int, a_bits: int) -> int:
        return (self.fused_bits(w_bits) // self.brick_bits) * (self.fused_bits(a_bits) // self.brick_bits)

    def macs_per_unit_cycle(self, w_bits: int, a_bits: int) -> float:
        """Multiply-adds one Fusion Unit completes per cycle (at least the 8x8 rate; wider operands
        take several cycles: Bit Fusion runs 16-bit operands temporally)."""
        return self.bricks_per_unit / self.bricks_per_mac(w_bits, a_bits)


@dataclass(frozen=True)
class LayerShape:
    """One convolution (``groups`` = channels for depth-wise) or linear layer (``kernel=1``, size 1)."""

    cin: int
    cout: int
    input_size: int
    kernel: int
    stride: int
    padding: int
    groups: int
    w_bits: int
    a_bits: int
    out_bits: int = 8
    input_w: Optional[int] = None  # non-square inputs; default input_size

    @property
    def out_size(self) -> int:
        return (self.input_size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_w(self) -> int:
        w = self.input_size if self.input_w is None else self.input_w
        return (w + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.out_size * self.out_w * self.cout * (self.cin // self.groups) * self.kernel**2

    @property
    def n_weights(self) -> int:
        return self.cout * (self.cin // self.groups) * self.kernel**2

    def reference_key(self) -> str:
        """The reference LUT's layer key (without the bits)."""
        return f"({self.cin}, {self.cout}, {self.input_size}, {self.kernel}, {self.stride}, {self.padding}, {self.groups})"


def lut_key(shape: LayerShape) -> str:
    return f"{shape.reference_key()}-W{shape.w_bits}A{shape.a_bits}"


@dataclass(frozen=True)
class LayerCost:
    latency_ms: float
    energy_mj: float
    compute_cycles: float
    memory_cycles: float
    dram_bytes: float
    utilisation: float


def _fill(n: int, lanes: int) -> float:
    """Fraction of ``lanes`` busy when ``n`` items are tiled over them."""
    return n / (math.ceil(n / lanes) * lanes)


def layer_cost(s: LayerShape, hw: BitFusionConfig) -> LayerCost:
    """Latency (ms) and energy (mJ) of one layer on the array (see the module doc)."""
    B = hw.batch
    depthwise = s.groups > 1 and s.groups == s.cin == s.cout
    reduction = s.kernel**2 if depthwise else (s.cin // s.groups) * s.kernel**2
    util = _fill(reduction, hw.rows) * _fill(s.cout, hw.cols)
    if depthwise:
        # one input channel per output channel: a column's rows see only the kernel window
        util = _fill(reduction, hw.rows) * _fill(s.cout, hw.cols)
    peak = hw.rows * hw.cols * hw.macs_per_unit_cycle(s.w_bits, s.a_bits)
    macs = float(s.macs) * B
    compute = macs / (peak * util)
    w_bytes = s.n_weights * s.w_bits / 8
    in_w = s.input_size if s.input_w is None else s.input_w
    in_bytes = B * s.cin * s.input_size * in_w * s.a_bits / 8
    out_bytes = B * s.cout * s.out_size * s.out_w * s.out_bits / 8
    refetch = 1 if w_bytes <= hw.wbuf_kb * 1024 else max(1, math.ceil(in_bytes / (hw.ibuf_kb * 1024)))
    dram = w_bytes * refetch + in_bytes + out_bytes
    memory = dram / hw.dram_bytes_per_cycle
    cycles = max(compute, memory)
    latency_ms = cycles / (hw.frequency_mhz * 1e3)
    # on-chip traffic: weights into the array once per tile, inputs streamed once per
    # column tile, partial sums written once per row tile
    col_tiles = math.ceil(s.cout / hw.cols) if not depthwise else 1
    row_tiles = math.ceil(reduction / hw.rows)
    sram_bits = s.n_weights * s.w_bits * refetch + in_bytes * 8 * col_tiles + B * s.cout * s.out_size * s.out_w * hw.accumulator_bits * row_tiles
    energy_pj = macs * hw.bricks_per_mac(s.w_bits, s.a_bits) * hw.e_brick_pj + sram_bits * hw.e_sram_pj_per_bit + dram * 8 * hw.e_dram_pj_per_bit
    return LayerCost(latency_ms, energy_pj * 1e-9, compute, memory, dram, util)


# ---------------------------------------------------------------------------
# reading a network
# ---------------------------------------------------------------------------


def network_layers(module: Any, input_shape: Sequence[int], default_bits: int = 8) -> List[LayerShape]:
    """The convolutions and linear layers of ``module`` in call order, from one
    batch-1 forward pass, with the bits of quantized layers (each layer's
    output bits are the next layer's input bits)."""
    import torch
    from torch import nn

    from .quantize import QuantConv2d, QuantLinear

    found: List[Tuple[Any, Tuple[int, ...], int, int]] = []
    inner = set()
    for m in module.modules():
        if isinstance(m, QuantConv2d):
            inner.add(id(m.conv))
        elif isinstance(m, QuantLinear):
            inner.add(id(m.linear))
    handles = []

    def hook(m, args, out):
        x = args[0]
        if isinstance(m, QuantConv2d):
            found.append((m.conv, tuple(x.shape), m.w_bits, m.a_bits))
        elif isinstance(m, QuantLinear):
            found.append((m.linear, tuple(x.shape), m.w_bits, m.a_bits))
        else:
            found.append((m, tuple(x.shape), default_bits, default_bits))

    for m in module.modules():
        if isinstance(m, (QuantConv2d, QuantLinear)) or (isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in inner):
            handles.append(m.register_forward_hook(hook))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, *[int(s) for s in input_shape]))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    shapes: List[LayerShape] = []
    for i, (m, xs, wb, ab) in enumerate(found):
        out_bits = found[i + 1][3] if i + 1 < len(found) else default_bits
        if isinstance(m, nn.Conv2d):
            k, st, pd = int(m.kernel_size[0]), int(m.stride[0]), int(m.padding[0]) if not isinstance(m.padding, str) else int(m.kernel_size[0]) // 2
            shapes.append(LayerShape(int(m.in_channels), int(m.out_channels), int(xs[2]), k, st, pd, int(m.groups), int(wb), int(ab), int(out_bits), input_w=int(xs[3])))
        else:
            shapes.append(LayerShape(int(m.in_features), int(m.out_features), 1, 1, 1, 0, 1, int(wb), int(ab), int(out_bits)))
    return shapes


def network_cost(layers: Iterable[LayerShape], hw: BitFusionConfig) -> Dict[str, float]:
    """Total latency (ms), energy (mJ), DRAM traffic and MACs of a list of layers."""
    lat = en = dram = macs = 0.0
    for s in layers:
        c = layer_cost(s, hw)
        lat += c.latency_ms
        en += c.energy_mj
        dram += c.dram_bytes
        macs += s.macs
    return {"latency_ms": lat, "energy_mj": en, "dram_kb": dram / 1024, "macs_m": macs / 1e6}


def build_lut(shapes: Iterable[LayerShape], hw: BitFusionConfig, bit_pairs: Sequence[Tuple[int, int]], path: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """The look-up table in the reference's format for ``shapes`` at every
    (weight, activation) bit pair; written as JSON to ``path`` when given
    (with the model's parameters under ``"__config__"``)."""
    table: Dict[str, Any] = {}
    for s in shapes:
        for w, a in bit_pairs:
            q = LayerShape(s.cin, s.cout, s.input_size, s.kernel, s.stride, s.padding, s.groups, int(w), int(a), int(a))
            c = layer_cost(q, hw)
            table[lut_key(q)] = {"latency": c.latency_ms, "energy": c.energy_mj}
    if path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({**table, "__config__": hw.to_dict()}, indent=0, sort_keys=True))
    return table
