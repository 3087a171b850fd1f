"""APQ's accuracy predictors and the predictor transfer.

* :class:`FullPrecisionPredictor`: an MLP on the architecture part of the
  one-hot encoding, three hidden layers of 400 units with ReLU (OFA's and
  APQ's predictor), trained on (architecture, full-precision accuracy) pairs,
  which are cheap: a sub-network of the trained supernet needs no training.
* :class:`QuantAwarePredictor`: the same network with a quantization branch:
  a linear map of the quantization part of the encoding added to the first
  layer's output, before its ReLU. Its samples are expensive (each needs
  quantization-aware fine-tuning), so it is *transferred*: initialised from
  the full-precision predictor (the quantization branch at zero, so it starts
  as exactly that predictor) and fine-tuned on the quantized samples.
  :func:`fit_quant_predictor` with ``init=None`` trains it from scratch, for
  the sample-efficiency comparison.

Both predict accuracy from standardised targets (the mean and spread of the
training accuracies are stored with the weights). :func:`rmse` and
:func:`pairwise_ranking_accuracy` score a predictor on held-out samples.
Training settings of the paper's predictors are not published; these are
Adam, learning rate 1e-3, full-batch MSE (stated in the README).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PredictorTraining",
    "FullPrecisionPredictor",
    "QuantAwarePredictor",
    "fit_fp_predictor",
    "fit_quant_predictor",
    "transfer",
    "rmse",
    "pairwise_ranking_accuracy",
    "save_predictor",
    "load_predictor",
]


@dataclass(frozen=True)
class PredictorTraining:
    """How a predictor is trained (``predictor:`` in configs).

    :param epochs: passes over the samples (full batch below ``batch_size`` samples).
    :param lr: Adam learning rate.
    :param weight_decay: L2 penalty.
    :param batch_size: samples per step.
    :param hidden: units per hidden layer (APQ: 400).
    :param layers: hidden layers (APQ: 3).
    """

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    hidden: int = 400
    layers: int = 3

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.lr <= 0 or self.hidden < 1 or self.layers < 1 or self.batch_size < 1:
            raise ValueError(f"predictor training: bad settings {asdict(self)}")


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("y_mean", torch.tensor(0.0))
        self.register_buffer("y_std", torch.tensor(1.0))

    def set_scale(self, y: np.ndarray) -> None:
        self.y_mean.fill_(float(np.mean(y)))
        self.y_std.fill_(float(max(np.std(y), 1e-3)))

    @torch.no_grad()
    def predict(self, arch: np.ndarray, quant: Optional[np.ndarray] = None) -> np.ndarray:
        self.eval()
        out = self.forward_normalised(torch.as_tensor(arch, dtype=torch.float32), None if quant is None else torch.as_tensor(quant, dtype=torch.float32))
        return (out * self.y_std + self.y_mean).numpy()


class FullPrecisionPredictor(_Scaled):
    """MLP: architecture encoding -> accuracy."""

    def __init__(self, n_arch: int, hidden: int = 400, layers: int = 3):
        super().__init__()
        self.n_arch, self.hidden, self.layers = int(n_arch), int(hidden), int(layers)
        self.first = nn.Linear(n_arch, hidden)
        self.body = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers - 1)])
        self.out = nn.Linear(hidden, 1)

    def trunk(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(h)
        for lin in self.body:
            h = F.relu(lin(h))
        return self.out(h).squeeze(-1)

    def forward_normalised(self, arch: torch.Tensor, quant: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.trunk(self.first(arch))


class QuantAwarePredictor(FullPrecisionPredictor):
    """MLP: (architecture, quantization) encodings -> quantized accuracy; the
    quantization branch is added to the first layer's output."""

    def __init__(self, n_arch: int, n_quant: int, hidden: int = 400, layers: int = 3):
        super().__init__(n_arch, hidden, layers)
        self.n_quant = int(n_quant)
        self.quant_branch = nn.Linear(n_quant, hidden, bias=False)

    def forward_normalised(self, arch: torch.Tensor, quant: Optional[torch.Tensor] = None) -> torch.Tensor:
        if quant is None:
            raise ValueError("the quantization-aware predictor needs the quantization part of the encoding")
        return self.trunk(self.first(arch) + self.quant_branch(quant))


def transfer(fp: FullPrecisionPredictor, n_quant: int, targets: Optional[np.ndarray] = None) -> QuantAwarePredictor:
    """A quantization-aware predictor initialised from ``fp`` (quantization branch
    at zero: it starts out ranking as ``fp`` ranks).

    With ``targets`` (the quantized samples' accuracies) the output scale is
    re-standardised on them: the network's normalised output is kept and read
    in the quantized samples' mean and spread, so it starts as ``fp``'s ranking
    placed on the quantized accuracies' range instead of predicting
    full-precision accuracies (quantization lowers them and widens their
    spread, which the fine-tuning would otherwise first have to learn as a
    large offset of a few samples). Without: ``fp``'s own scale (it starts out
    predicting exactly what ``fp`` predicts)."""
    q = QuantAwarePredictor(fp.n_arch, n_quant, fp.hidden, fp.layers)
    missing, unexpected = q.load_state_dict(fp.state_dict(), strict=False)
    if unexpected or set(missing) != {"quant_branch.weight"}:
        raise RuntimeError(f"predictor transfer: unexpected parameter mismatch (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        q.quant_branch.weight.zero_()
    if targets is not None:
        q.set_scale(np.asarray(targets, dtype=float))
    return q


def _train(model: _Scaled, arch: np.ndarray, quant: Optional[np.ndarray], y: np.ndarray, t: PredictorTraining, seed: int) -> list:
    if len(y) == 0:
        raise ValueError("no samples to train the predictor on")
    if not np.all(np.isfinite(y)):
        raise ValueError("predictor targets contain NaN or infinite accuracies")
    g = torch.Generator().manual_seed(int(seed))
    A = torch.as_tensor(arch, dtype=torch.float32)
    Q = None if quant is None else torch.as_tensor(quant, dtype=torch.float32)
    Y = (torch.as_tensor(y, dtype=torch.float32) - model.y_mean) / model.y_std
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    losses = []
    model.train()
    n = len(Y)
    for _ in range(t.epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(0, n, t.batch_size):
            idx = perm[s : s + t.batch_size]
            pred = model.forward_normalised(A[idx], None if Q is None else Q[idx])
            loss = F.mse_loss(pred, Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    model.eval()
    return losses


def fit_fp_predictor(arch: np.ndarray, y: np.ndarray, training: Optional[PredictorTraining] = None, seed: int = 0) -> FullPrecisionPredictor:
    """Train the full-precision predictor on (architecture encodings, accuracies)."""
    t = training or PredictorTraining()
    torch.manual_seed(seed)
    model = FullPrecisionPredictor(arch.shape[1], t.hidden, t.layers)
    model.set_scale(y)
    _train(model, arch, None, y, t, seed)
    return model


def fit_quant_predictor(
    arch: np.ndarray,
    quant: np.ndarray,
    y: np.ndarray,
    init: Optional[FullPrecisionPredictor] = None,
    training: Optional[PredictorTraining] = None,
    seed: int = 0,
    restandardise: bool = False,
) -> QuantAwarePredictor:
    """Train the quantization-aware predictor: transferred from ``init`` (APQ), or
    from scratch (``init=None``); ``restandardise`` (transfer only): read the
    transferred output in the quantized targets' mean and spread (:func:`transfer`;
    off by default: better RMSE on digits, worse RMSE and ranking on Fashion-MNIST,
    docs/benchmarks/apq.md)."""
    t = training or PredictorTraining()
    torch.manual_seed(seed)
    if init is not None:
        model = transfer(init, quant.shape[1], y if restandardise else None)
    else:
        model = QuantAwarePredictor(arch.shape[1], quant.shape[1], t.hidden, t.layers)
        model.set_scale(y)
    _train(model, arch, quant, y, t, seed)
    return model


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(y)) ** 2)))


def pairwise_ranking_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of pairs with distinct true accuracies that the predictor orders correctly."""
    p, t = np.asarray(pred, dtype=float), np.asarray(y, dtype=float)
    dp = np.sign(p[:, None] - p[None, :])
    dt = np.sign(t[:, None] - t[None, :])
    mask = np.triu(dt != 0, 1)
    if not mask.any():
        return math.nan
    return float((dp[mask] == dt[mask]).mean())


def save_predictor(model: _Scaled, path: Any, meta: Optional[Dict[str, Any]] = None) -> Path:
    """State dict + shape as plain data (loads with ``weights_only=True``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    kind = "quant" if isinstance(model, QuantAwarePredictor) else "fp"
    shape = {"kind": kind, "n_arch": model.n_arch, "hidden": model.hidden, "layers": model.layers, "n_quant": getattr(model, "n_quant", 0)}
    torch.save({"state_dict": model.state_dict(), "shape": shape, "meta": json.loads(json.dumps(meta or {}, default=str))}, p)
    return p


def load_predictor(path: Any) -> Tuple[_Scaled, Dict[str, Any]]:
    import pickle

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"predictor file {p} does not exist (train one with `hwaml-apq predictor ...`)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
        shape = blob["shape"]
        if shape["kind"] == "quant":
            model: _Scaled = QuantAwarePredictor(shape["n_arch"], shape["n_quant"], shape["hidden"], shape["layers"])
        else:
            model = FullPrecisionPredictor(shape["n_arch"], shape["hidden"], shape["layers"])
        model.load_state_dict(blob["state_dict"])
    except (pickle.UnpicklingError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{p} is not a predictor written by hwaml-apq: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return model, dict(blob.get("meta") or {})
