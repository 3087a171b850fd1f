"""The MicroNet language model: a Transformer-XL-style decoder with adaptive input and softmax.

As the winning MicroNet entry built it (Yan, Wang, Guo, Han 2019, on top of
Dai et al.'s Transformer-XL):

* **pre-LayerNorm decoder layers**: ``x + Attn(LN(x))`` then ``x + FF(LN(x))``;
* **segment recurrence**: each layer keeps the keys and values of the last
  ``mem_len`` positions (detached) as memory, and every query attends to the
  ``mem_len`` positions before it and itself, across the segment boundary;
* **trained position term**: per layer a ``(d_head, mem_len + 1)`` table ``P``;
  the score of query ``q_i`` on key ``k_j`` is ``(q_i.k_j + q_i.P[:, i - j]) /
  sqrt(d_head)``, a learned relative-position bias (the published
  ``pos_emb: trained``);
* **adaptive input** (Baevski & Auli): the frequency-sorted vocabulary is cut
  at ``cutoffs`` into bins whose embeddings have ``bin_widths`` dimensions, each
  projected to ``d_model``;
* **adaptive softmax** (Grave et al.) with the **same tables tied** as output
  weights (the projections stay separate, as published), plus one cluster
  logit per tail bin in the head.

:data:`PUBLISHED` is the submitted configuration (8 layers, width 256, 8 heads of
24, feed-forward 768, segments of 96 with 96 of memory, cutoffs [3500, 25000],
bin widths [256, 64, 4], WikiText-103's 267,735 words): 8.30M parameters.

Linear layers are :class:`MaskedLinear`: they carry an optional pruning mask
(``weight_mask`` buffer, see :mod:`.compress`) and an optional bit-width
(``bits``) for quantization-aware training; the embedding tables carry the same
two attributes through :class:`MaskedEmbedding`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelConfig",
    "PUBLISHED",
    "MaskedLinear",
    "MaskedEmbedding",
    "AdaptiveEmbedding",
    "AdaptiveSoftmax",
    "DecoderLayer",
    "MicroNetLM",
    "fake_quant",
]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a :class:`MicroNetLM` (defaults: the published submission)."""

    n_vocab: int = 267735
    n_layers: int = 8
    d_model: int = 256
    n_head: int = 8
    d_head: int = 24
    d_inner: int = 768
    seq_len: int = 96
    mem_len: int = 96
    cutoffs: Tuple[int, ...] = (3500, 25000)
    bin_widths: Tuple[int, ...] = (256, 64, 4)
    dropout: float = 0.0
    #: a LayerNorm after the last layer (the submission has none)
    final_norm: bool = False
    #: the non-parametric cache (its theta and lambda are trained parameters)
    use_cache: bool = True
    n_cache: int = 2000
    cache_theta: float = 0.016
    cache_lambda: float = 0.07

    def __post_init__(self) -> None:
        object.__setattr__(self, "cutoffs", tuple(int(c) for c in self.cutoffs))
        object.__setattr__(self, "bin_widths", tuple(int(w) for w in self.bin_widths))
        if len(self.bin_widths) != len(self.cutoffs) + 1:
            raise ValueError(f"bin_widths {list(self.bin_widths)} needs one width per bin: {len(self.cutoffs) + 1} for cutoffs {list(self.cutoffs)}")
        edges = (0,) + self.cutoffs + (self.n_vocab,)
        if any(a >= b for a, b in zip(edges, edges[1:])):
            raise ValueError(f"cutoffs {list(self.cutoffs)} must increase strictly inside (0, n_vocab={self.n_vocab})")
        if self.bin_widths[0] != self.d_model:
            raise ValueError(f"bin_widths[0] ({self.bin_widths[0]}) must equal d_model ({self.d_model}): the head bin is the full width")
        for name in ("n_layers", "d_model", "n_head", "d_head", "d_inner", "seq_len", "mem_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.bin_widths) < 1:
            raise ValueError(f"bin widths must be >= 1, got {list(self.bin_widths)}")
        if self.use_cache and self.n_cache < 1:
            raise ValueError(f"n_cache must be >= 1 when the cache is used, got {self.n_cache}")
        if not (self.cache_theta > 0 and 0 < self.cache_lambda < 1):
            raise ValueError(f"cache_theta must be > 0 and cache_lambda in (0, 1), got {self.cache_theta}, {self.cache_lambda}")

    @property
    def edges(self) -> Tuple[int, ...]:
        return (0,) + self.cutoffs + (self.n_vocab,)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["cutoffs"], d["bin_widths"] = list(self.cutoffs), list(self.bin_widths)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        names = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - names)
        if bad:
            raise ValueError(f"unknown model config key(s) {bad} (valid: {sorted(names)})")
        return cls(**dict(d))


#: the MicroNet WikiText-103 submission (results/8.3M_cache2000_hebbian of the entry)
PUBLISHED = ModelConfig()


def fake_quant(x: torch.Tensor, bits: Optional[int]) -> torch.Tensor:
    """Symmetric uniform quantization to ``bits`` (per tensor), straight-through gradient."""
    if not bits:
        return x
    levels = 2 ** (bits - 1) - 1
    scale = x.detach().abs().max().clamp(min=1e-8) / levels
    q = torch.round(x / scale).clamp(-levels, levels) * scale
    return x + (q - x).detach()


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with an optional pruning mask and quantization bit-width.

    ``weight_mask`` (a buffer, absent while dense) is applied to the weight in the
    forward pass; ``bits`` (None: float) fake-quantizes weight and input.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.bits: Optional[int] = None
        self.register_buffer("weight_mask", None)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight if self.weight_mask is None else self.weight * self.weight_mask
        return fake_quant(w, self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fake_quant(x, self.bits), self.effective_weight(), self.bias)


class MaskedEmbedding(nn.Embedding):
    """``nn.Embedding`` with the same mask / bits attributes (its table is also an output layer)."""

    def __init__(self, num: int, dim: int):
        super().__init__(num, dim)
        self.bits: Optional[int] = None
        self.register_buffer("weight_mask", None)
        nn.init.normal_(self.weight, 0.0, 0.02)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight if self.weight_mask is None else self.weight * self.weight_mask
        return fake_quant(w, self.bits)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.bits is None and self.weight_mask is None:
            return super().forward(idx)
        return F.embedding(idx, self.effective_weight())


class AdaptiveEmbedding(nn.Module):
    """Adaptive input: bin ``i`` has a ``(size_i, width_i)`` table projected to ``d_model``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        edges = cfg.edges
        self.tables = nn.ModuleList(MaskedEmbedding(edges[i + 1] - edges[i], w) for i, w in enumerate(cfg.bin_widths))
        self.projections = nn.ModuleList(MaskedLinear(w, cfg.d_model, bias=False) for w in cfg.bin_widths[1:])
        self.scale = math.sqrt(cfg.d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        flat = tokens.reshape(-1)
        out = torch.zeros(flat.numel(), cfg.d_model, dtype=self.tables[0].weight.dtype, device=flat.device)
        edges = cfg.edges
        for i, table in enumerate(self.tables):
            sel = ((flat >= edges[i]) & (flat < edges[i + 1])).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            emb = table(flat[sel] - edges[i])
            if i > 0:
                emb = self.projections[i - 1](emb)
            out = out.index_copy(0, sel, emb)
        return (out * self.scale).view(*tokens.shape, cfg.d_model)


class AdaptiveSoftmax(nn.Module):
    """Adaptive softmax over the frequency bins, output weights tied to the input tables.

    The head scores bin 0's words and one cluster logit per tail bin; a tail
    word's log-probability is its cluster's head log-probability plus its
    log-probability inside the tail, whose logits come from a projection of the
    hidden state to the bin's width.
    """

    def __init__(self, cfg: ModelConfig, tables: nn.ModuleList):
        super().__init__()
        self.cfg = cfg
        self.tables = tables  # shared with AdaptiveEmbedding (tied weights): one tensor, counted once
        edges = cfg.edges
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(edges[i + 1] - edges[i])) for i in range(len(edges) - 1))
        n_tail = len(cfg.cutoffs)
        self.clusters = MaskedLinear(cfg.d_model, n_tail) if n_tail else None
        self.projections = nn.ModuleList(MaskedLinear(cfg.d_model, w, bias=False) for w in cfg.bin_widths[1:])
        self.bits: Optional[int] = None

    def _head_logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = F.linear(fake_quant(h, self.bits), self.tables[0].effective_weight(), self.biases[0])
        if self.clusters is not None:
            logits = torch.cat([logits, self.clusters(h)], dim=1)
        return logits

    def _tail_logits(self, i: int, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        proj = self.projections[i - 1](h)
        return F.linear(fake_quant(proj, self.bits), self.tables[i].effective_weight(), self.biases[i]), proj

    def log_prob(self, h: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, Dict[int, Tuple[torch.Tensor, torch.Tensor]]]:
        """Log-probability of each target: ``h`` (N, d_model), ``target`` (N,).

        Also returns, per bin, the (detached) inputs of that bin's output layer and
        the bin-local targets: what the Hebbian softmax update needs.
        """
        edges = self.cfg.edges
        head = self._head_logits(h).log_softmax(dim=1)
        out = torch.zeros(target.shape[0], dtype=h.dtype, device=h.device)
        seen: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        c0 = edges[1]
        for i in range(len(edges) - 1):
            sel = ((target >= edges[i]) & (target < edges[i + 1])).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            local = target[sel] - edges[i]
            if i == 0:
                lp = head[sel].gather(1, local[:, None]).squeeze(1)
                seen[0] = (h[sel].detach(), local)
            else:
                tail, proj = self._tail_logits(i, h[sel])
                lp = head[sel, c0 + i - 1] + tail.log_softmax(dim=1).gather(1, local[:, None]).squeeze(1)
                seen[i] = (proj.detach(), local)
            out = out.index_copy(0, sel, lp)
        return out, seen

    def full_log_prob(self, h: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of every word: (N, n_vocab) (for distillation and checks)."""
        edges = self.cfg.edges
        head = self._head_logits(h).log_softmax(dim=1)
        c0 = edges[1]
        parts = [head[:, :c0]]
        for i in range(1, len(edges) - 1):
            tail, _ = self._tail_logits(i, h)
            parts.append(head[:, c0 + i - 1 : c0 + i] + tail.log_softmax(dim=1))
        return torch.cat(parts, dim=1)


class DecoderLayer(nn.Module):
    """One pre-LN layer: windowed multi-head attention over memory + segment, then feed-forward."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h, k = cfg.n_head, cfg.d_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = MaskedLinear(cfg.d_model, h * 3 * k)
        # trained relative-position term: column r is the bias direction for distance r
        self.pos_emb = nn.Parameter(torch.randn(k, cfg.mem_len + 1) * 0.02)
        self.out = MaskedLinear(h * k, cfg.d_model, bias=False)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff1 = MaskedLinear(cfg.d_model, cfg.d_inner)
        self.ff2 = MaskedLinear(cfg.d_inner, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.bits: Optional[int] = None

    def forward(self, x: torch.Tensor, mem: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, L, d_model); ``mem`` (B, M, n_head, 2 d_head) keys+values or None."""
        cfg = self.cfg
        B, L, _ = x.shape
        H, K, W = cfg.n_head, cfg.d_head, cfg.mem_len
        qkv = self.qkv(self.ln1(x)).view(B, L, H, 3 * K)
        q, kv = fake_quant(qkv[..., :K], self.bits), fake_quant(qkv[..., K:], self.bits)
        M = 0 if mem is None else mem.shape[1]
        kv_all = kv if mem is None else torch.cat([mem, kv], dim=1)  # (B, M+L, H, 2K)
        k, v = kv_all[..., :K], kv_all[..., K:]
        scores = torch.einsum("blhk,bjhk->bhlj", q, k)
        pos = fake_quant(self.pos_emb, self.bits)
        q_pos = torch.einsum("blhk,kr->bhlr", q, pos)  # (B, H, L, W+1)
        qi = torch.arange(L, device=x.device)[:, None] + M
        kj = torch.arange(M + L, device=x.device)[None, :]
        dist = qi - kj
        valid = (dist >= 0) & (dist <= W)
        rel = q_pos.gather(3, dist.clamp(0, W).expand(B, H, L, M + L))
        scores = (scores + rel) * (K ** -0.5)
        attn = scores.masked_fill(~valid, float("-inf")).softmax(dim=-1)
        ctx = torch.einsum("bhlj,bjhk->blhk", self.drop(fake_quant(attn, self.bits)), v).reshape(B, L, H * K)
        x = x + self.drop(self.out(ctx))
        x = x + self.drop(self.ff2(F.relu(self.ff1(self.ln2(x)))))
        new_mem = kv_all[:, -W:].detach()
        return x, new_mem


class MicroNetLM(nn.Module):
    """The whole model: adaptive input -> decoder layers -> adaptive softmax (+ cache parameters)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = AdaptiveEmbedding(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model) if cfg.final_norm else None
        self.softmax = AdaptiveSoftmax(cfg, self.embed.tables)
        if cfg.use_cache:
            # learned flatness theta (> 0) and interpolation lambda (in (0, 1))
            self.cache_log_theta = nn.Parameter(torch.tensor(math.log(cfg.cache_theta)))
            self.cache_logit_lambda = nn.Parameter(torch.tensor(math.log(cfg.cache_lambda / (1 - cfg.cache_lambda))))
        #: bit-width after quantization-aware training (None: float); read by the scorer
        self.quant_bits: Optional[int] = None

    def cache_params(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(theta, lambda)`` of the cache as tensors (gradients flow to them)."""
        if not self.cfg.use_cache:
            raise RuntimeError("this model has no cache (use_cache=false)")
        return self.cache_log_theta.exp(), torch.sigmoid(self.cache_logit_lambda)

    def set_cache_params(self, theta: float, lam: float) -> None:
        with torch.no_grad():
            self.cache_log_theta.fill_(math.log(theta))
            self.cache_logit_lambda.fill_(math.log(lam / (1 - lam)))

    def forward(self, tokens: torch.Tensor, mems: Optional[List[Optional[torch.Tensor]]] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """``tokens`` (B, L) -> hidden states (B, L, d_model) and the new per-layer memory."""
        x = self.drop(self.embed(tokens))
        mems = mems if mems is not None else [None] * len(self.layers)
        new_mems = []
        for layer, mem in zip(self.layers, mems):
            x, m = layer(x, mem)
            new_mems.append(m)
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(x), new_mems

    def num_parameters(self) -> int:
        """Parameters, tied tensors once (``parameters()`` already de-duplicates)."""
        return sum(p.numel() for p in self.parameters())
