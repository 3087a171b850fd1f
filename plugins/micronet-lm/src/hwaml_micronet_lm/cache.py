"""The non-parametric cache (Grave et al. 2017, made trainable as in MicroNet).

The cache stores the last ``n_cache`` pairs (hidden state ``h_j``, next word
``w_{j+1}``) of the stream. At position ``t`` it predicts

    p_cache(w) = sum_{j : w_{j+1} = w} softmax_j(theta * h_t . h_j)

over the ``n_cache`` positions before ``t``, and the model's prediction becomes
``(1 - lambda) p_model + lambda p_cache``. ``theta`` (flatness) and ``lambda``
(interpolation) are parameters of the model trained with it
(:meth:`MicroNetLM.cache_params`); after training they are searched on the
validation split (:func:`search_cache`), as the submission did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

__all__ = ["CacheState", "cache_probability", "mix", "search_cache", "CacheSearch"]


@dataclass
class CacheState:
    """Per-stream cache contents: keys (B, C, d) and the words that followed them (B, C)."""

    keys: torch.Tensor
    values: torch.Tensor


def cache_probability(
    h: torch.Tensor, target: torch.Tensor, state: Optional[CacheState], n_cache: int, theta: torch.Tensor
) -> Tuple[torch.Tensor, CacheState]:
    """``p_cache(target_t)`` for every position of a segment, and the updated cache.

    ``h`` (B, L, d) and ``target`` (B, L): the segment's hidden states and next
    words. Position ``t`` sees the ``n_cache`` entries before it (earlier
    segments and earlier positions of this one), never itself.
    """
    B, L, _ = h.shape
    if state is None:
        keys, values = h, target
    else:
        keys, values = torch.cat([state.keys, h], dim=1), torch.cat([state.values, target], dim=1)
    C = keys.shape[1] - L
    scores = theta * torch.einsum("bld,bjd->blj", h, keys)
    pos = torch.arange(L, device=h.device)[:, None] + C
    j = torch.arange(keys.shape[1], device=h.device)[None, :]
    visible = (j < pos) & (j >= pos - n_cache)
    scores = scores.masked_fill(~visible, float("-inf"))
    # rows with nothing visible (the very first position) get no cache mass
    any_visible = visible.any(dim=1)
    weights = torch.where(any_visible[None, :, None], scores, torch.zeros_like(scores)).softmax(dim=-1)
    weights = weights * visible
    match = values[:, None, :] == target[:, :, None]
    p = (weights * match).sum(dim=-1)
    new = CacheState(keys[:, -n_cache:].detach(), values[:, -n_cache:])
    return p, new


def mix(log_p_model: torch.Tensor, p_cache: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``log((1 - lambda) p_model + lambda p_cache)``, computed stably."""
    return torch.logaddexp(torch.log1p(-lam) + log_p_model, torch.log(lam) + torch.log(p_cache.clamp(min=1e-30)))


@dataclass(frozen=True)
class CacheSearch:
    """Result of the validation search: the chosen pair and the table it came from."""

    theta: float
    lam: float
    perplexity: float
    grid: List[Tuple[float, float, float]]


def search_cache(
    hidden: torch.Tensor,
    log_p_model: torch.Tensor,
    target: torch.Tensor,
    n_cache: int,
    thetas: Sequence[float],
    lambdas: Sequence[float],
    chunk: int = 512,
) -> CacheSearch:
    """Grid search of (theta, lambda) on a validation stream, batch 1, online.

    ``hidden`` (N, d), ``log_p_model`` (N,), ``target`` (N,): the model's hidden
    states, log-probabilities and next words along the stream (collected once);
    for each theta the cache probabilities are computed once and every lambda is
    scored on them.
    """
    if not thetas or not lambdas:
        raise ValueError("search_cache needs at least one theta and one lambda")
    grid = []
    best = None
    h = hidden[None]
    t = target[None]
    for theta in thetas:
        state = None
        ps = []
        with torch.no_grad():
            for s in range(0, hidden.shape[0], chunk):
                p, state = cache_probability(h[:, s : s + chunk], t[:, s : s + chunk], state, n_cache, torch.tensor(float(theta)))
                ps.append(p[0])
        p_cache = torch.cat(ps)
        for lam in lambdas:
            nll = -mix(log_p_model, p_cache, torch.tensor(float(lam))).mean().item()
            ppl = math.exp(nll)
            grid.append((float(theta), float(lam), ppl))
            if best is None or ppl < best[2]:
                best = (float(theta), float(lam), ppl)
    assert best is not None
    return CacheSearch(best[0], best[1], best[2], grid)
