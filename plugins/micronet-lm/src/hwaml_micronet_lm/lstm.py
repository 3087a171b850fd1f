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


def train_lstm(model: LSTMLM, stream: torch.Tensor, epochs: int = 1, batch_size: int = 16, bptt: int = 64, lr: float = 2e-3, clip: float = 0.25, max_train_tokens=None, progress: bool = True):
    """Truncated BPTT with Adam and cosine decay; returns tokens per second."""
    import math
    import time

    from hwaml.progress import bar

    from .data import batchify

    if max_train_tokens is not None:
        stream = stream[: max_train_tokens + 1]
    data = batchify(stream, batch_size)
    n_seg = (data.shape[1] - 1) // bptt
    total = max(1, n_seg * epochs)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    step, tokens = 0, 0
    t0 = time.perf_counter()
    with bar(total=total, desc="lstm", unit="seg", enabled=progress) as pbar:
        for _ in range(epochs):
            model.train()
            state = None
            for s in range(n_seg):
                x = data[:, s * bptt : (s + 1) * bptt]
                y = data[:, s * bptt + 1 : (s + 1) * bptt + 1]
                logp, state = model(x, state)
                loss = -logp.gather(2, y[..., None]).mean()
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"LSTM training loss became {lv} at step {step}")
                step += 1
                tokens += x.numel()
                pbar.update(1)
    return tokens / max(1e-9, time.perf_counter() - t0)


@torch.no_grad()
def evaluate_lstm(model: LSTMLM, stream: torch.Tensor, max_tokens=None, chunk: int = 256) -> float:
    """Perplexity online at batch 1."""
    import math

    model.eval()
    if max_tokens is not None:
        stream = stream[: max_tokens + 1]
    state, total, n = None, 0.0, 0
    for s in range(0, stream.numel() - 1, chunk):
        x = stream[s : s + chunk][None]
        y = stream[s + 1 : s + chunk + 1][None]
        x = x[:, : y.shape[1]]
        logp, state = model(x, state)
        total += float(-logp.gather(2, y[..., None]).sum())
        n += y.numel()
    return math.exp(total / n)
