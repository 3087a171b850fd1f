"""scikit-learn's handwritten digits, upsampled to the network's resolution,
and a small training loop."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["digits_split", "train_classifier", "accuracy"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _digits(resolution: int, seed: int, test_size: float) -> Tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ds = load_digits()
    x = torch.tensor(ds.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    y = torch.tensor(ds.target, dtype=torch.long)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed, stratify=ds.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def digits_split(resolution: int, seed: int = 0, test_size: float = 0.3) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: 1 x R x R images in [-1, 1], a
    stratified split fixed by ``seed``."""
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8 (digits are 8x8), got {resolution}")
    return _digits(int(resolution), int(seed), float(test_size))  # type: ignore[return-value]


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int, show_progress: bool = True, on_epoch: Any = None
) -> nn.Module:
    """Adam with a one-cycle schedule; logs the loss per epoch (and shows a bar
    through :func:`hwaml.progress.progress` when bars are on). ``on_epoch(epoch,
    model)`` runs after each epoch with the model in eval mode (it may raise
    :class:`hwaml.TrialPruned`)."""
    from hwaml.progress import progress

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    model.train()
    for ep in progress(range(epochs), total=epochs, desc="tinyengine train", unit="epoch", enabled=show_progress):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), batch_size):
            b = perm[i : i + batch_size]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        log.info("epoch %d/%d loss %.4f", ep + 1, epochs, total / len(x))
        if on_epoch is not None:
            model.eval()
            on_epoch(ep, model)
            model.train()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())
