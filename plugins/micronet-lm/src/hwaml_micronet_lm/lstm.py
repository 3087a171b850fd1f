"""The baseline of the challenge's kind: a single-layer LSTM language model with a full softmax.

The MicroNet WikiText-103 baseline is an LSTM language model (159M parameters,
318M operations per token: every weight used about once per token). This is
that shape scaled to a corpus: an input embedding of ``d_embed``, one LSTM
layer of ``d_hidden`` units, an optional projection back to ``d_embed`` and a
full softmax over the vocabulary (untied). Its perplexity on the corpus sets
the target, and its parameter and operation counts normalise a same-corpus
score beside the official one.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["LSTMLM"]


class LSTMLM(nn.Module):
    def __init__(self, n_vocab: int, d_embed: int = 256, d_hidden: int = 1024, project: bool = True, dropout: float = 0.1):
        super().__init__()
        if min(n_vocab, d_embed, d_hidden) < 1:
            raise ValueError("LSTM baseline sizes must be >= 1")
        self.n_vocab, self.d_embed, self.d_hidden = int(n_vocab), int(d_embed), int(d_hidden)
        self.embed = nn.Embedding(n_vocab, d_embed)
        self.lstm = nn.LSTM(d_embed, d_hidden, batch_first=True)
        self.proj = nn.Linear(d_hidden, d_embed, bias=False) if project else None
        self.d_out = d_embed if project else d_hidden
        self.out = nn.Linear(self.d_out, n_vocab)
        self.drop = nn.Dropout(dropout)
        # one bias vector is enough for the gates: merge PyTorch's two
        nn.init.zeros_(self.lstm.bias_hh_l0)
        self.lstm.bias_hh_l0.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        x = self.drop(self.embed(tokens))
        y, state = self.lstm(x, state)
        if self.proj is not None:
            y = self.proj(y)
        return self.out(self.drop(y)).log_softmax(dim=-1), (state[0].detach(), state[1].detach())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
