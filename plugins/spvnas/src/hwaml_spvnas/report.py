"""A bird's-eye picture of a scan: ground truth beside the prediction (colour per class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .semantic_kitti import CLASS_NAMES, IGNORE

__all__ = ["birds_eye_png", "PALETTE"]

#: a fixed colour per train id; ignored points grey
PALETTE = np.concatenate([
    np.array([[245, 150, 100], [245, 230, 100], [150, 60, 30], [180, 30, 80], [255, 0, 0], [30, 30, 255], [200, 40, 255], [90, 30, 150],
              [255, 0, 255], [255, 150, 255], [75, 0, 75], [75, 0, 175], [0, 200, 255], [50, 120, 255], [0, 175, 0], [0, 60, 135],
              [80, 240, 150], [150, 240, 255], [0, 0, 255]], dtype=np.uint8),
])
assert len(PALETTE) == len(CLASS_NAMES)


def _raster(points: np.ndarray, labels: np.ndarray, extent: float, pixels: int) -> np.ndarray:
    img = np.zeros((pixels, pixels, 3), dtype=np.uint8)
    x = ((points[:, 0] + extent) / (2 * extent) * (pixels - 1)).astype(int)
    y = ((extent - points[:, 1]) / (2 * extent) * (pixels - 1)).astype(int)
    ok = (x >= 0) & (x < pixels) & (y >= 0) & (y < pixels)
    order = np.argsort(points[ok, 2])  # higher points drawn last
    lab = labels[ok][order]
    col = np.where((lab == IGNORE)[:, None], np.array([[90, 90, 90]], dtype=np.uint8), PALETTE[np.clip(lab, 0, len(PALETTE) - 1)])
    img[y[ok][order], x[ok][order]] = col
    return img


def birds_eye_png(points: np.ndarray, truth: np.ndarray, pred: np.ndarray, path: str | Path, extent: float = 40.0, pixels: int = 400) -> Path:
    """Write ``path``: ground truth (left) and prediction (right), ``extent`` metres around the sensor."""
    left = _raster(points, np.asarray(truth), extent, pixels)
    right = _raster(points, np.asarray(pred), extent, pixels)
    gap = np.full((pixels, 8, 3), 255, dtype=np.uint8)
    path = Path(path)
    Image.fromarray(np.concatenate([left, gap, right], 1)).save(path)
    return path
