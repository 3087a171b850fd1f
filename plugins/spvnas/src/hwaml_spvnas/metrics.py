"""Intersection over union per class and its mean over the classes present in the ground truth.

A class absent from the ground truth of the evaluated scans has no IoU (the
SPVNAS reference scores it 1.0, which inflates the mean on small splits); it is
left out of the mean. A class present but never predicted scores 0.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .semantic_kitti import CLASS_NAMES, IGNORE

__all__ = ["ConfusionMatrix", "SMALL_CLASSES"]

#: the small-object classes SPVNAS is about (pedestrians, cyclists, poles, signs)
SMALL_CLASSES = ("person", "bicyclist", "motorcyclist", "bicycle", "pole", "traffic-sign")


class ConfusionMatrix:
    def __init__(self, num_classes: int = len(CLASS_NAMES), ignore: int = IGNORE):
        self.num_classes, self.ignore = int(num_classes), int(ignore)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        p = np.asarray(pred.cpu() if isinstance(pred, torch.Tensor) else pred).reshape(-1).astype(np.int64)
        t = np.asarray(target.cpu() if isinstance(target, torch.Tensor) else target).reshape(-1).astype(np.int64)
        if p.shape != t.shape:
            raise ValueError(f"{p.size} predictions for {t.size} labels")
        keep = t != self.ignore
        p, t = p[keep], t[keep]
        if t.size and (t.max() >= self.num_classes or t.min() < 0):
            raise ValueError(f"label {int(t.max())} outside 0..{self.num_classes - 1}")
        if p.size and (p.max() >= self.num_classes or p.min() < 0):
            raise ValueError(f"prediction outside 0..{self.num_classes - 1}")
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def present(self) -> np.ndarray:
        return self.matrix.sum(1) > 0

    def iou(self) -> np.ndarray:
        """IoU per class (NaN for classes absent from the ground truth)."""
        tp = np.diag(self.matrix).astype(np.float64)
        fp = self.matrix.sum(0) - tp
        fn = self.matrix.sum(1) - tp
        out = np.full(self.num_classes, np.nan)
        present = self.present()
        out[present] = tp[present] / (tp + fp + fn)[present]
        return out

    def miou(self, classes: Optional[Sequence[str]] = None) -> float:
        """Mean IoU over the present classes (or over the present ones of ``classes``)."""
        iou = self.iou()
        if classes is not None:
            idx = [CLASS_NAMES.index(c) for c in classes]
            iou = iou[idx]
        iou = iou[np.isfinite(iou)]
        if iou.size == 0:
            raise ValueError("no evaluated class is present in the ground truth (every label ignored?)")
        return float(iou.mean())

    def per_class(self) -> Dict[str, float]:
        return {name: float(v) for name, v in zip(CLASS_NAMES, self.iou()) if np.isfinite(v)}

    def accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")
