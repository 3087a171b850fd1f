"""Training and evaluation loops (SPVNAS's recipe, shrunk by config for CPU).

SGD with Nesterov momentum 0.9 and weight decay 1e-4, a cosine learning-rate
schedule after a linear warm-up, cross-entropy ignoring the unlabelled class,
rotation and scale augmentation. The supernet is trained by sampling one
architecture uniformly per step; progressive depth shrinking keeps every stage at
full depth for the first ``depth_shrink_at`` fraction of the epochs and samples
depth 1 or 2 after. Evaluation maps the predictions on voxel representatives
back to every point (``inverse``). Shared batch-norm statistics do not fit a
sub-network, so each is recalibrated on a few training scans before it is scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hwaml.progress import progress

from .data import PreparedScan, collate, prepare_scan
from .metrics import ConfusionMatrix
from .semantic_kitti import IGNORE

__all__ = ["TrainingConfig", "Trainer", "evaluate_scans", "recalibrate_bn", "cosine_warmup"]


@dataclass
class TrainingConfig:
    epochs: int = 15
    batch_size: int = 2
    lr: float = 0.24
    momentum: float = 0.9
    weight_decay: float = 1.0e-4
    warmup_epochs: float = 1.0
    #: progressive depth shrinking: fraction of the supernet epochs at full depth
    depth_shrink_at: float = 0.5
    bn_calibration_scans: int = 4


def cosine_warmup(step: int, total: int, warmup: int, base: float) -> float:
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, progress_)))


class Trainer:
    """Trains ``net`` on ``scans`` (a sequence of ``(points, labels)``) epoch by epoch.

    ``sample_arch(rng, epoch)`` (optional) picks the architecture of each step
    (the supernet's uniform sampling); ``None`` trains the network as it is.
    """

    def __init__(self, net: nn.Module, scans: Sequence[Tuple[np.ndarray, np.ndarray]], voxel_size: float, cfg: TrainingConfig, seed: int = 0,
                 sample_arch: Optional[Callable[[np.random.Generator, int], dict]] = None, show_progress: bool = True, desc: str = "train"):
        if len(scans) == 0:
            raise ValueError("no training scans")
        self.net, self.scans, self.voxel_size, self.cfg = net, scans, float(voxel_size), cfg
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.sample_arch = sample_arch
        self.show_progress, self.desc = show_progress, desc
        self.steps_per_epoch = max(1, math.ceil(len(scans) / cfg.batch_size))
        self.total = self.steps_per_epoch * cfg.epochs
        self.warmup = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.step = 0
        self.opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)

    def train_epoch(self, epoch: int) -> float:
        self.net.train()
        order = self.rng.permutation(len(self.scans))
        losses = []
        batches = [order[i : i + self.cfg.batch_size] for i in range(0, len(order), self.cfg.batch_size)]
        for batch in progress(batches, total=len(batches), desc=f"{self.desc} epoch {epoch + 1}/{self.cfg.epochs}", enabled=self.show_progress):
            if self.sample_arch is not None:
                self.net.set_arch(self.sample_arch(self.rng, epoch))
            prepared = [prepare_scan(*self.scans[i], self.voxel_size, augment=True, rng=self.rng) for i in batch]
            z, labels = collate(prepared)
            for g in self.opt.param_groups:
                g["lr"] = cosine_warmup(self.step, self.total, self.warmup, self.cfg.lr)
            logits = self.net(z)
            if not bool((labels != IGNORE).any()):
                self.step += 1
                continue
            loss = F.cross_entropy(logits, labels, ignore_index=IGNORE)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.desc}: loss {float(loss)} at step {self.step} (learning rate too high?)")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            losses.append(float(loss.detach()))
            self.step += 1
        if self.sample_arch is not None:
            self.net.set_arch(None)
        return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def recalibrate_bn(net: nn.Module, scans: Sequence[Tuple[np.ndarray, np.ndarray]], voxel_size: float) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) on ``scans``."""
    if not scans:
        return
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for pts, lab in scans:
        z, _ = collate([prepare_scan(pts, lab, voxel_size)])
        net(z)
    for m in bns:
        m.momentum = 0.1
    net.eval()


@torch.no_grad()
def evaluate_scans(net: nn.Module, scans: Sequence[Tuple[np.ndarray, np.ndarray]], voxel_size: float, num_classes: int, show_progress: bool = False) -> ConfusionMatrix:
    """Confusion matrix over every point of ``scans`` (predictions on representatives, mapped back)."""
    net.eval()
    cm = ConfusionMatrix(num_classes)
    for pts, lab in progress(scans, total=len(scans), desc="evaluate", enabled=show_progress):
        s = prepare_scan(pts, lab, voxel_size)
        z, _ = collate([s])
        logits = net(z)
        if not torch.isfinite(logits).all():
            raise FloatingPointError("non-finite logits in evaluation")
        pred = logits.argmax(1)[s.inverse]
        cm.update(pred, s.point_labels)
    return cm


def predict_points(net: nn.Module, scan: PreparedScan) -> torch.Tensor:
    with torch.no_grad():
        z, _ = collate([scan])
        return net(z).argmax(1)[scan.inverse]
