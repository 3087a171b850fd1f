"""Hebbian softmax (Rae, Dyer, Dayan, Lillicrap 2018) on the adaptive softmax's tied tables.

After each optimizer step, the output embedding ``w_i`` of every word seen in
the batch moves towards the mean of the (softmax-input) hidden states that
predicted it:

    w_i <- (1 - lambda_i) w_i + lambda_i * mean(h for targets i)
    lambda_i = max(1 / c_i, gamma)  while the word's count c_i < T, else 0

so a rare word's embedding is set from its first few occurrences (one-shot)
and handed over to gradient descent once it has been seen ``T`` times. The
published settings are ``T = 500``, ``gamma = 0.01``. With ``match_norm`` the
hidden states are first scaled to the norm of the word's current embedding,
as the MicroNet code does (the tables are shared with the input side, so an
unscaled state would change the input embedding's scale).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

__all__ = ["HebbianSoftmax"]


class HebbianSoftmax:
    """Counts per vocabulary bin and the update rule; call :meth:`update` after each step."""

    def __init__(self, bin_sizes: List[int], T: int = 500, gamma: float = 0.01, match_norm: bool = True):
        if T < 1 or not 0 < gamma <= 1:
            raise ValueError(f"Hebbian softmax needs T >= 1 and 0 < gamma <= 1, got T={T}, gamma={gamma}")
        self.T, self.gamma, self.match_norm = int(T), float(gamma), bool(match_norm)
        self.counts = [torch.zeros(n, dtype=torch.long) for n in bin_sizes]

    @torch.no_grad()
    def update(self, tables: torch.nn.ModuleList, seen: Dict[int, Tuple[torch.Tensor, torch.Tensor]]) -> int:
        """Apply the rule to the rows of ``tables`` named in ``seen`` (bin -> (inputs, local targets)).

        Returns how many rows were moved.
        """
        moved = 0
        for i, (hid, tgt) in seen.items():
            weight = tables[i].weight
            counts = self.counts[i]
            n = torch.bincount(tgt, minlength=counts.numel())
            rows = (n > 0).nonzero().squeeze(1)
            before = counts[rows]
            counts += n
            active = rows[before < self.T]
            if active.numel() == 0:
                continue
            hid = hid.to(weight.dtype)
            if self.match_norm:
                hid = hid * (weight[tgt].norm(dim=1, keepdim=True) / hid.norm(dim=1, keepdim=True).clamp(min=1e-8))
            sums = torch.zeros_like(weight).index_add_(0, tgt, hid)
            lam = (1.0 / counts[active].float()).clamp(min=self.gamma)[:, None]
            mean = sums[active] / n[active][:, None].to(weight.dtype)
            weight[active] = (1 - lam) * weight[active] + lam * mean
            moved += int(active.numel())
        return moved
