"""APQ's look-up-table costing of joint configurations, without building networks.

The published evolution checks every child against the latency / energy
budget before the predictor scores it, with a look-up table of the
accelerator (layer shape + bits -> latency, energy) summed over the layers of
the child. :class:`JointCostTable` does the same over the BitFusion-style
model of :mod:`hwaml_apq.hardware`: the layers of a configuration follow from
its blocks (:func:`hwaml_apq.space.joint_blocks`: point-wise expand, depth-wise,
squeeze-excite, point-wise project, at the block's bits), the fixed stem, first
block and head are traced once from a built network, and each distinct layer's
cost is looked up in a table filled on first use. The sum is the same number
the ``bitfusion`` backend computes by tracing the built network
(``tests/test_apq_hardware.py`` checks it on random configurations), in
microseconds instead of the ~0.2 s a network build and trace take, so the
evolution can run the reference's generations.

A run whose backend is not this model (other parameters, another backend)
must not use it: :meth:`JointCostTable.check` compares it with the run's
``ctx.cost_fn`` and raises on a mismatch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .hardware import BitFusionConfig, LayerCost, LayerShape, layer_cost, network_layers
from .space import joint_blocks

__all__ = ["JointCostTable", "CostModelMismatch", "TABLE_METRICS"]

#: the metrics the table gives (the bitfusion backend's)
TABLE_METRICS = ("latency_ms", "energy_mj")


class CostModelMismatch(ValueError):
    """The look-up table disagrees with the run's cost backend."""


class JointCostTable:
    """Latency and energy of joint configurations of one supernet shape on one
    BitFusion configuration, from a per-layer look-up table.

    :param arch: the supernet shape (:class:`hwaml_ofa_nas.SupernetConfig`).
    :param resolution: the input resolution of the joint space.
    :param hw: the accelerator model's parameters.
    """

    def __init__(self, arch: Any, resolution: int, hw: Optional[BitFusionConfig] = None):
        self.arch = arch
        self.resolution = int(resolution)
        self.hw = hw or BitFusionConfig()
        self._table: Dict[Tuple[Any, ...], LayerCost] = {}
        self._fixed: Optional[Tuple[List[LayerShape], List[LayerShape]]] = None
        self._blocks: Dict[Tuple[Any, ...], List[Tuple[Any, ...]]] = {}

    # -- layers -----------------------------------------------------------------
    def _fixed_parts(self, config: Mapping[str, Any]) -> Tuple[List[LayerShape], List[LayerShape]]:
        """The stem + first block and the head (8-bit, the same in every
        configuration), traced once from one built quantized network."""
        if self._fixed is None:
            from torch import nn

            from .network import build_untrained, quantize_subnet
            from .quantize import QuantConv2d, QuantLinear

            net = quantize_subnet(build_untrained(self.arch, config, self.resolution), self.arch, inplace=True)
            layers = network_layers(net, (self.arch.in_channels, self.resolution, self.resolution), self.hw.default_bits)

            def count(m: nn.Module) -> int:
                inner = {id(q.conv) for q in m.modules() if isinstance(q, QuantConv2d)} | {id(q.linear) for q in m.modules() if isinstance(q, QuantLinear)}
                return sum(1 for q in m.modules() if isinstance(q, (QuantConv2d, QuantLinear)) or (isinstance(q, (nn.Conv2d, nn.Linear)) and id(q) not in inner))

            n_front = count(net.stem) + count(net.first_block)
            n_head = count(net.head)
            self._fixed = (layers[:n_front], layers[len(layers) - n_head :])
        return self._fixed

    def _block_rows(self, b: Any) -> List[Tuple[Any, ...]]:
        """One searched block's layers (point-wise expand, depth-wise, squeeze-excite,
        point-wise project) as tuples of :class:`LayerShape`'s fields up to the input bits, plus the input width."""
        from .network import _se_mid

        d = self.hw.default_bits
        pw_w, pw_a, dw_w, dw_a = b.bits
        size, k = b.size, b.kernel
        rows: List[Tuple[Any, ...]] = []
        if b.mid != b.cin:
            rows.append((b.cin, b.mid, size, 1, 1, 0, 1, pw_w, pw_a, size))
        rows.append((b.mid, b.mid, size, k, b.stride, k // 2, b.mid, dw_w, dw_a, size))
        out = (size + 2 * (k // 2) - k) // b.stride + 1
        if b.se:
            se = _se_mid(self.arch, b.mid)
            rows.append((b.mid, se, 1, 1, 1, 0, 1, d, d, 1))
            rows.append((se, b.mid, 1, 1, 1, 0, 1, d, d, 1))
        rows.append((b.mid, b.cout, out, 1, 1, 0, 1, pw_w, pw_a, out))
        return rows

    def _rows(self, config: Mapping[str, Any]) -> List[Tuple[Any, ...]]:
        """The layers of ``config`` as tuples of :class:`LayerShape`'s fields in its order
        (cin, cout, input size, kernel, stride, padding, groups, w bits, a bits, out bits, input width)."""
        from .space import BIT_KEYS, stage_blocks

        front, head = self._fixed_parts(config)
        d = self.hw.default_bits
        seq: List[Tuple[Any, ...]] = [(s.cin, s.cout, s.input_size, s.kernel, s.stride, s.padding, s.groups, s.w_bits, s.a_bits, s.input_w) for s in front]
        # a block's shapes follow from its place (stage, index: input width and size, stride) and its own genes
        keys = [(name, i, int(b["kernel"]), int(b["width"])) + tuple(int(b[k]) for k in BIT_KEYS) for name in self.arch.stage_names for i, b in enumerate(stage_blocks(config, name))]
        if any(k not in self._blocks for k in keys):
            for k, b in zip(keys, joint_blocks(self.arch, config, self.resolution)):
                self._blocks.setdefault(k, self._block_rows(b))
        for k in keys:
            seq += self._blocks[k]
        seq += [(s.cin, s.cout, s.input_size, s.kernel, s.stride, s.padding, s.groups, s.w_bits, s.a_bits, s.input_w) for s in head]
        # every layer's output is stored at the next layer's input bits (the last at the default)
        n = len(seq)
        return [t[:9] + (seq[i + 1][8] if i + 1 < n else d, t[9]) for i, t in enumerate(seq)]

    def layers(self, config: Mapping[str, Any]) -> List[LayerShape]:
        """The costed layers of ``config`` in call order (what
        :func:`hwaml_apq.hardware.network_layers` finds in its built network)."""
        return [LayerShape(*r) for r in self._rows(config)]

    # -- cost ---------------------------------------------------------------------
    def cost(self, config: Mapping[str, Any]) -> Dict[str, float]:
        """``{"latency_ms", "energy_mj"}`` of ``config`` (per inference)."""
        lat = en = 0.0
        table = self._table
        for r in self._rows(config):
            c = table.get(r)
            if c is None:
                c = table[r] = layer_cost(LayerShape(*r), self.hw)
            lat += c.latency_ms
            en += c.energy_mj
        return {"latency_ms": lat, "energy_mj": en}

    @property
    def entries(self) -> int:
        """Distinct (layer shape, bits) entries looked up so far."""
        return len(self._table)

    def check(self, configs: Sequence[Mapping[str, Any]], cost_fn: Callable[[Any], Any], metrics: Sequence[str], rel_tol: float = 1e-6) -> None:
        """Raise :class:`CostModelMismatch` unless the table gives the run's
        backend costs (``cost_fn(Candidate) -> CostReport``) of ``metrics`` on ``configs``."""
        from hwaml import Candidate

        for cfg in configs:
            ours = self.cost(cfg)
            theirs = cost_fn(Candidate(dict(cfg))).metrics
            for m in metrics:
                if m not in theirs:
                    raise CostModelMismatch(f"the run's backends report no {m!r} (they report {sorted(theirs)}): the look-up table models the bitfusion backend only")
                a, b = float(ours[m]), float(theirs[m])
                if abs(a - b) > rel_tol * max(abs(a), abs(b), 1e-30):
                    raise CostModelMismatch(
                        f"the look-up table gives {m}={a:.6g} but the run's backend {b:.6g} for the same configuration: the backend is not the "
                        f"BitFusion model with the searcher's hardware parameters (set searcher.hardware to the backend's config, or searcher.cost_model=backend)"
                    )
