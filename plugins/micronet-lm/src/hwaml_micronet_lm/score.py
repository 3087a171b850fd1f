"""The MicroNet Challenge score (NeurIPS 2019), language-modelling track.

    score = parameter_storage / 159M + math_operations / 318M

where 159M and 318M are the parameter and operation counts of the challenge's
WikiText-103 LSTM baseline. The rules, as the challenge defined them and the
winning entry applied them:

* **Parameters**: every value needed for inference. A 32-bit value counts as
  one parameter, a ``b``-bit one as ``b/32``. If nothing in the model is
  quantized below 16 bits, every value may be counted as 16-bit for free; as
  soon as anything is quantized below 16 bits there is no free 16-bit.
* **Sparsity**: a sparse tensor is stored as its non-zeros plus a bitmask over
  its full shape (1 bit per element: ``numel / 32`` parameters).
* **Operations**: multiplications and additions are counted separately, per
  test token, at batch size 1, online (the memory of previous segments and the
  cache are part of the cost); an operation on ``b``-bit operands counts
  ``b/32``. A multiplication by a pruned (zero) weight is not done and not
  counted. Additions are counted at 32 bits (the accumulators), quantized or
  not, as the winning entry counted them; the free 16 bits apply to stored
  values and multiplications.

With quantization-aware training the inputs of every product are quantized
(weights, layer inputs, queries, keys, values, attention weights, position
table, the hidden state the cache compares): those multiplications count at
``b`` bits; LayerNorm, softmax and scaling stay at 32.

Counting conventions (documented choices where the rules leave room): an exp,
log, square root or division counts as one multiplication; comparisons (ReLU,
max, matching a cache entry's word) are not arithmetic and are not counted; a
matrix-vector product with ``n`` non-zero weights counts ``n`` multiplications
and ``n`` additions (the accumulation, with the bias as the first addend when
there is one, else ``n - rows``); operations that depend on the word (adaptive
input projections, tail clusters of the softmax) are averaged over the test
tokens' bins.

:func:`score_model` returns a :class:`ScoreSheet`: every counted tensor and
operation with its bits and equivalents, what the challenge asked entrants to
submit.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn as nn

__all__ = [
    "BASELINE_PARAMS",
    "BASELINE_OPS",
    "PUBLISHED_FINAL",
    "micronet_score",
    "ParamEntry",
    "OpEntry",
    "ScoreSheet",
    "score_model",
    "bin_fractions",
]

#: the challenge's WikiText-103 LSTM baseline
BASELINE_PARAMS = 159e6
BASELINE_OPS = 318e6
#: the winning entry's final counts (Yan et al., MicroNet for efficient language modeling)
PUBLISHED_FINAL = {"params_eq": 1_757_392, "ops_eq": 8_806_715, "score": 0.0387}


def micronet_score(params_eq: float, ops_eq: float, params_baseline: float = BASELINE_PARAMS, ops_baseline: float = BASELINE_OPS) -> float:
    """``params/159M + ops/318M`` (or normalised by another baseline's counts)."""
    if params_baseline <= 0 or ops_baseline <= 0:
        raise ValueError("baseline counts must be positive")
    return float(params_eq) / params_baseline + float(ops_eq) / ops_baseline


@dataclass(frozen=True)
class ParamEntry:
    name: str
    shape: List[int]
    numel: int
    nonzero: int
    bits: int
    sparse: bool
    #: nonzero * bits / 32 + (numel / 32 if sparse)
    equivalents: float


@dataclass(frozen=True)
class OpEntry:
    name: str
    mults: float
    adds: float
    mult_bits: int
    add_bits: int
    equivalents: float


@dataclass
class ScoreSheet:
    """Every counted tensor and operation, and the totals."""

    params: List[ParamEntry] = field(default_factory=list)
    ops: List[OpEntry] = field(default_factory=list)
    quantized_bits: Optional[int] = None
    notes: Dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ totals
    def params_eq(self) -> float:
        return float(sum(p.equivalents for p in self.params))

    def ops_eq(self) -> float:
        return float(sum(o.equivalents for o in self.ops))

    def raw_params(self) -> int:
        return int(sum(p.numel for p in self.params))

    def raw_ops(self) -> float:
        return float(sum(o.mults + o.adds for o in self.ops))

    def score(self, params_baseline: float = BASELINE_PARAMS, ops_baseline: float = BASELINE_OPS) -> float:
        return micronet_score(self.params_eq(), self.ops_eq(), params_baseline, ops_baseline)

    def totals(self) -> Dict[str, float]:
        return {
            "params_eq": self.params_eq(),
            "ops_eq": self.ops_eq(),
            "raw_params": float(self.raw_params()),
            "raw_ops": self.raw_ops(),
            "micronet_score": self.score(),
        }

    # ------------------------------------------------------------ export
    def to_json(self) -> str:
        return json.dumps(
            {"totals": self.totals(), "quantized_bits": self.quantized_bits, "notes": self.notes, "params": [asdict(p) for p in self.params], "ops": [asdict(o) for o in self.ops]},
            indent=1,
        )

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["kind", "name", "shape", "numel_or_mults", "nonzero_or_adds", "bits", "sparse", "equivalents"])
        for p in self.params:
            w.writerow(["param", p.name, "x".join(map(str, p.shape)), p.numel, p.nonzero, p.bits, int(p.sparse), f"{p.equivalents:.3f}"])
        for o in self.ops:
            w.writerow(["op", o.name, "", f"{o.mults:.3f}", f"{o.adds:.3f}", f"{o.mult_bits}/{o.add_bits}", "", f"{o.equivalents:.3f}"])
        return buf.getvalue()


# ---------------------------------------------------------------------------
# counting a MicroNetLM
# ---------------------------------------------------------------------------


def bin_fractions(tokens: torch.Tensor, edges: Sequence[int]) -> List[float]:
    """Fraction of ``tokens`` in each vocabulary bin ``[edges[i], edges[i+1])``."""
    n = max(1, tokens.numel())
    return [float(((tokens >= a) & (tokens < b)).sum()) / n for a, b in zip(edges, edges[1:])]


class _Counter:
    def __init__(self, quantized: Optional[int]):
        self.q = quantized
        self.sheet = ScoreSheet(quantized_bits=quantized)

    # bits of a stored value / an operation
    def weight_bits(self) -> int:
        return self.q if self.q else 16

    def other_bits(self) -> int:
        # values and operations that quantization-aware training left in float: 32 bits once
        # anything is quantized (no free 16-bit), 16 bits (free) while nothing is
        return 32 if self.q else 16

    def add_param(self, name: str, t: torch.Tensor, mask: Optional[torch.Tensor], quantizable: bool) -> None:
        numel = t.numel()
        nonzero = int(mask.sum().item()) if mask is not None else numel
        sparse = mask is not None and nonzero < numel
        bits = self.weight_bits() if quantizable else self.other_bits()
        eq = nonzero * bits / 32 + (numel / 32 if sparse else 0.0)
        self.sheet.params.append(ParamEntry(name, list(t.shape), numel, nonzero, bits, sparse, eq))

    def add_op(self, name: str, mults: float, adds: float, quantized_mults: bool) -> None:
        mb = self.weight_bits() if quantized_mults else self.other_bits()
        ab = 32  # accumulators
        eq = mults * mb / 32 + adds * ab / 32
        if mults or adds:
            self.sheet.ops.append(OpEntry(name, float(mults), float(adds), mb, ab, eq))


def _nnz(module: nn.Module) -> int:
    m = getattr(module, "weight_mask", None)
    return int(m.sum().item()) if m is not None else module.weight.numel()


def _linear_ops(c: _Counter, name: str, module: nn.Module, weight: float = 1.0) -> None:
    """A matrix-vector product with the module's non-zero weights (and its bias)."""
    nnz = _nnz(module)
    rows = module.weight.shape[0]
    has_bias = getattr(module, "bias", None) is not None
    c.add_op(name, weight * nnz, weight * (nnz if has_bias else max(0, nnz - rows)), quantized_mults=True)


def _layernorm_ops(c: _Counter, name: str, d: int) -> None:
    # mean (d adds, 1 div), centre (d adds), variance (d mults, d adds, 1 div), rsqrt (1), scale (d mults), affine (d mults, d adds)
    c.add_op(name, 3 * d + 3, 4 * d, quantized_mults=False)


def score_model(
    model: nn.Module,
    input_fractions: Optional[Sequence[float]] = None,
    target_fractions: Optional[Sequence[float]] = None,
    use_cache: Optional[bool] = None,
) -> ScoreSheet:
    """Count a :class:`~hwaml_micronet_lm.model.MicroNetLM` (or the LSTM baseline) by the rules.

    ``input_fractions`` / ``target_fractions``: the share of test tokens in each
    vocabulary bin as input and as predicted word (``None``: all in the head bin,
    the cheapest case). ``use_cache``: count the cache (default: the model's
    configuration).
    """
    from .lstm import LSTMLM
    from .model import MicroNetLM

    if isinstance(model, LSTMLM):
        return _score_lstm(model)
    if not isinstance(model, MicroNetLM):
        raise TypeError(f"micronet scoring counts MicroNetLM or LSTMLM modules, got {type(model).__name__}")
    cfg = model.cfg
    n_bins = len(cfg.bin_widths)
    fin = list(input_fractions) if input_fractions is not None else [1.0] + [0.0] * (n_bins - 1)
    fout = list(target_fractions) if target_fractions is not None else [1.0] + [0.0] * (n_bins - 1)
    if len(fin) != n_bins or len(fout) != n_bins:
        raise ValueError(f"bin fractions need {n_bins} entries (one per bin), got {len(fin)} and {len(fout)}")
    cache_on = cfg.use_cache if use_cache is None else bool(use_cache)
    c = _Counter(model.quant_bits)

    # ---- parameters (tied tables once)
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        is_weight = name.endswith(".weight") and hasattr(owner, "weight_mask")
        mask = owner.weight_mask if is_weight else None
        if name.startswith("cache_") and not cache_on:
            continue
        quantizable = is_weight or name.endswith("pos_emb")
        c.add_param(name, p, mask, quantizable)

    # ---- operations per token
    d, H, K, W = cfg.d_model, cfg.n_head, cfg.d_head, cfg.mem_len
    keys = W + 1  # each query attends to itself and the mem_len positions before it
    emb = model.embed
    for i in range(1, n_bins):
        if fin[i]:
            _linear_ops(c, f"embed.projection{i} (x{fin[i]:.4f} of tokens)", emb.projections[i - 1], fin[i])
    c.add_op("embed.scale sqrt(d)", d, 0, quantized_mults=False)
    for li, layer in enumerate(model.layers):
        p = f"layers.{li}"
        _layernorm_ops(c, f"{p}.ln1", d)
        _linear_ops(c, f"{p}.qkv", layer.qkv)
        c.add_op(f"{p}.attn q.k ({keys} keys)", H * keys * K, H * keys * (K - 1), quantized_mults=True)
        c.add_op(f"{p}.attn q.pos ({keys} distances)", H * keys * K, H * keys * (K - 1), quantized_mults=True)
        c.add_op(f"{p}.attn add+scale", H * keys, H * keys, quantized_mults=False)
        # softmax: subtract max, exp, sum, divide
        c.add_op(f"{p}.attn softmax", 2 * H * keys, 2 * H * keys, quantized_mults=False)
        c.add_op(f"{p}.attn weights.v", H * keys * K, H * (keys - 1) * K, quantized_mults=True)
        _linear_ops(c, f"{p}.out", layer.out)
        c.add_op(f"{p}.residual1", 0, d, quantized_mults=False)
        _layernorm_ops(c, f"{p}.ln2", d)
        _linear_ops(c, f"{p}.ff1", layer.ff1)
        _linear_ops(c, f"{p}.ff2", layer.ff2)
        c.add_op(f"{p}.residual2", 0, d, quantized_mults=False)
    if model.norm is not None:
        _layernorm_ops(c, "final_norm", d)
    sm = model.softmax
    edges = cfg.edges
    head_rows = edges[1] + len(cfg.cutoffs)
    nnz0 = _nnz(sm.tables[0]) + (_nnz(sm.clusters) if sm.clusters is not None else 0)
    c.add_op("softmax.head logits", nnz0, nnz0, quantized_mults=True)
    c.add_op("softmax.head log-softmax", head_rows + 1, head_rows + 1, quantized_mults=False)
    for i in range(1, n_bins):
        if fout[i]:
            f = fout[i]
            _linear_ops(c, f"softmax.projection{i} (x{f:.4f} of targets)", sm.projections[i - 1], f)
            nnz = _nnz(sm.tables[i])
            rows = edges[i + 1] - edges[i]
            c.add_op(f"softmax.tail{i} logits (x{f:.4f})", f * nnz, f * nnz, quantized_mults=True)
            c.add_op(f"softmax.tail{i} log-softmax + cluster (x{f:.4f})", f * (rows + 1), f * (rows + 2), quantized_mults=False)
    if cache_on:
        n = cfg.n_cache
        c.add_op(f"cache h.keys ({n} entries)", n * d, n * (d - 1), quantized_mults=True)
        c.add_op("cache theta scale + softmax", 3 * n, 2 * n, quantized_mults=False)
        c.add_op("cache sum over matches", 0, n, quantized_mults=False)
        # p_model = exp(log p), lambda * p_cache, (1 - lambda) * p_model, their sum, its log
        c.add_op("cache interpolation", 4, 2, quantized_mults=False)
    c.sheet.notes = {
        "per": "test token, batch 1, online",
        "attention_keys": keys,
        "cache": cache_on,
        "n_cache": cfg.n_cache if cache_on else 0,
        "input_fractions": fin,
        "target_fractions": fout,
    }
    return c.sheet


def _score_lstm(model: nn.Module) -> ScoreSheet:
    """The LSTM baseline: dense, counted at 16 bits (nothing quantized)."""
    c = _Counter(None)
    for name, p in model.named_parameters():
        if p.requires_grad:  # the frozen second LSTM bias is all zeros: not needed for inference
            c.add_param(name, p, None, True)
    E, Hd, V = model.d_embed, model.d_hidden, model.n_vocab
    c.add_op("lstm gates W[x;h]+b", 4 * Hd * (E + Hd), 4 * Hd * (E + Hd) + 4 * Hd, quantized_mults=True)
    c.add_op("lstm nonlinearities (3 sigmoid, 2 tanh)", 5 * Hd, 0, quantized_mults=False)
    c.add_op("lstm cell/hidden update", 3 * Hd, Hd, quantized_mults=False)
    if model.proj is not None:
        c.add_op("lstm output projection", Hd * E, Hd * E, quantized_mults=True)
    c.add_op("softmax logits", V * model.d_out, V * model.d_out, quantized_mults=True)
    c.add_op("softmax log-softmax", V + 1, V + 1, quantized_mults=False)
    c.sheet.notes = {"per": "test token, batch 1, online", "model": "LSTM baseline"}
    return c.sheet
