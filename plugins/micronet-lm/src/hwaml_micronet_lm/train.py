"""Training and evaluation loops shared by every stage of the pipeline.

Training streams the corpus as ``batch_size`` contiguous rows cut into segments
of ``seq_len`` (Transformer-XL style): each layer's memory and the cache carry
over from one segment to the next. The loss is the negative log-likelihood of
the model's prediction, mixed with the cache when the model has one (theta and
lambda receive gradients), optionally mixed with the distillation loss; after
each optimizer step the Hebbian softmax update and the pruning schedule run.

Evaluation is online at batch size 1 (the setting the challenge counts): the
stream is read in segments of ``seq_len`` with the memory and the cache of
everything before.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from hwaml.progress import bar

from .cache import CacheState, cache_probability, mix
from .data import batchify
from .model import MicroNetLM, fake_quant

__all__ = ["TrainConfig", "train_lm", "evaluate_stream", "collect_stream", "TrainStats", "DistillTarget"]


@dataclass(frozen=True)
class TrainConfig:
    """One training stage (Adam, linear warm-up then cosine decay, gradient clipping)."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 50
    clip: float = 0.25
    #: train on the first this many tokens of the training split (None: all)
    max_train_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"training needs epochs >= 0, batch_size >= 1, lr > 0 (got {self.epochs}, {self.batch_size}, {self.lr})")


@dataclass
class TrainStats:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: List[float] = field(default_factory=list)

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DistillTarget:
    """Top-k soft labels of a teacher over the training stream and the hard-loss ramp.

    ``indices``/``probs`` (N-1, k): the teacher's k most likely next words after
    position t of the training stream; the loss is ``r * hard + (1 - r) * soft``
    with ``r`` rising linearly from ``hard_min`` to ``hard_max`` over the stage
    (0.5 -> 0.95 as published).
    """

    indices: torch.Tensor
    probs: torch.Tensor
    hard_min: float = 0.5
    hard_max: float = 0.95

    def hard_ratio(self, step: int, total: int) -> float:
        return self.hard_min + min(1.0, step / max(1, total)) * (self.hard_max - self.hard_min)


def _segment_loss(
    model: MicroNetLM,
    x: torch.Tensor,
    y: torch.Tensor,
    mems: Optional[List[torch.Tensor]],
    cache: Optional[CacheState],
    use_cache: bool,
) -> Tuple[torch.Tensor, torch.Tensor, Dict[int, Tuple[torch.Tensor, torch.Tensor]], List[torch.Tensor], Optional[CacheState]]:
    """Per-token log-probabilities (B, L) of one segment, and the carried state."""
    h, mems = model(x, mems)
    B, L, d = h.shape
    logp, seen = model.softmax.log_prob(h.reshape(-1, d), y.reshape(-1))
    logp = logp.view(B, L)
    if use_cache:
        theta, lam = model.cache_params()
        p_cache, cache = cache_probability(fake_quant(h, model.quant_bits), y, cache, model.cfg.n_cache, theta)
        logp = mix(logp, p_cache, lam)
    return logp, h, seen, mems, cache


def train_lm(
    model: MicroNetLM,
    stream: torch.Tensor,
    cfg: TrainConfig,
    hebbian: Any = None,
    pruner: Any = None,
    distill: Optional[DistillTarget] = None,
    on_epoch: Optional[Callable[[int], None]] = None,
    progress: bool = True,
    desc: str = "train",
    seed: int = 0,
) -> TrainStats:
    """Train ``model`` on a 1-D token stream for ``cfg.epochs`` epochs.

    ``hebbian``: a :class:`~hwaml_micronet_lm.hebbian.HebbianSoftmax` (updated
    after each step); ``pruner``: a :class:`~hwaml_micronet_lm.compress.GradualPruner`
    (its ``step`` is called with the step number); ``on_epoch(epoch)``: called
    after each epoch (validation, reporting, pruning decisions).
    """
    torch.manual_seed(seed)
    if cfg.max_train_tokens is not None:
        stream = stream[: cfg.max_train_tokens + 1]
    data = batchify(stream, cfg.batch_size)
    L = model.cfg.seq_len
    n_seg = (data.shape[1] - 1) // L
    if n_seg < 1:
        raise ValueError(f"{stream.numel()} training tokens give no segment of {L} at batch size {cfg.batch_size}")
    total = n_seg * cfg.epochs
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    stats = TrainStats()
    use_cache = model.cfg.use_cache
    row_len = data.shape[1]
    offsets = torch.arange(cfg.batch_size)[:, None] * row_len
    step = 0
    t0 = time.perf_counter()
    with bar(total=total, desc=desc, unit="seg", enabled=progress) as pbar:
        for epoch in range(cfg.epochs):
            model.train()
            mems, cache = None, None
            for s in range(n_seg):
                x = data[:, s * L : (s + 1) * L]
                y = data[:, s * L + 1 : (s + 1) * L + 1]
                logp, h, seen, mems, cache = _segment_loss(model, x, y, mems, cache, use_cache)
                hard = -logp.mean()
                loss = hard
                if distill is not None:
                    pos = (offsets + torch.arange(s * L, (s + 1) * L)[None, :]).reshape(-1)
                    idx, probs = distill.indices[pos], distill.probs[pos].float()
                    probs = probs / probs.sum(dim=1, keepdim=True)
                    logq = model.softmax.full_log_prob(h.reshape(-1, h.shape[-1])).gather(1, idx)
                    soft = -(probs * logq).sum(dim=1).mean()
                    r = distill.hard_ratio(step, total)
                    loss = r * hard + (1 - r) * soft
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                if hebbian is not None:
                    hebbian.update(model.softmax.tables, seen)
                if pruner is not None:
                    pruner.step(step)
                lv = float(hard.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"{desc}: training loss became {lv} at step {step} (lower the learning rate)")
                stats.losses.append(lv)
                step += 1
                stats.tokens += x.numel()
                pbar.update(1)
                if s % 20 == 0:
                    pbar.set_postfix(ppl=f"{math.exp(min(lv, 50)):.1f}")
            stats.seconds = time.perf_counter() - t0
            stats.steps = step
            if on_epoch is not None:
                on_epoch(epoch)
                t0 = time.perf_counter() - stats.seconds  # exclude validation time from throughput
    stats.seconds = max(stats.seconds, 1e-9)
    return stats


@torch.no_grad()
def collect_stream(model: MicroNetLM, stream: torch.Tensor, max_tokens: Optional[int] = None, chunk: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states (N, d), model log-probabilities (N,) and next words (N,), online at batch 1."""
    model.eval()
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    L = chunk or model.cfg.seq_len
    mems = None
    hs, lps, ys = [], [], []
    n = stream.numel() - 1
    for s in range(0, n, L):
        x = stream[s : min(s + L, n)][None]
        y = stream[s + 1 : min(s + L, n) + 1][None]
        h, mems = model(x, mems)
        lp, _ = model.softmax.log_prob(h[0], y[0])
        hs.append(h[0])
        lps.append(lp)
        ys.append(y[0])
    # the cache compares quantized hidden states once the model is quantized
    return fake_quant(torch.cat(hs), model.quant_bits), torch.cat(lps), torch.cat(ys)


@torch.no_grad()
def evaluate_stream(model: MicroNetLM, stream: torch.Tensor, max_tokens: Optional[int] = None, use_cache: Optional[bool] = None) -> float:
    """Perplexity online at batch 1 (with the cache when the model has one and ``use_cache`` is not False)."""
    hidden, logp, target = collect_stream(model, stream, max_tokens)
    cache_on = model.cfg.use_cache if use_cache is None else (use_cache and model.cfg.use_cache)
    if cache_on:
        theta, lam = model.cache_params()
        ps, state = [], None
        for s in range(0, hidden.shape[0], 512):
            p, state = cache_probability(hidden[None, s : s + 512], target[None, s : s + 512], state, model.cfg.n_cache, theta)
            ps.append(p[0])
        logp = mix(logp, torch.cat(ps), lam)
    nll = float(-logp.mean())
    if not math.isfinite(nll):
        raise FloatingPointError(f"validation loss is {nll}")
    return math.exp(nll)
