"""Scans -> network inputs: the procedural set, augmentation, voxel representatives, batches.

As in the SPVNAS reference, each scan is voxelised with :func:`sparse_quantize`;
the network sees one representative point per voxel (features x, y, z,
remission; coordinates in voxel units) and is trained on the representatives'
labels; for evaluation its predictions are mapped back to every point through
the inverse map. Training scans are rotated about z (uniform angle) and scaled
(uniform in [0.95, 1.05]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from .lidar_sim import SceneConfig, SensorConfig, simulate_scan
from .semantic_kitti import IGNORE, learning_map
from .sparse import PointTensor, sparse_quantize

__all__ = ["Scan", "ProceduralLidar", "prepare_scan", "collate", "PreparedScan"]


@dataclass
class Scan:
    points: np.ndarray  # [N, 4] float32 x, y, z, remission
    labels: np.ndarray  # [N] int64 train ids (IGNORE = 255)


class ProceduralLidar:
    """``count`` procedural scans of the set ``seed`` (SemanticKITTI train ids).

    Scans are generated on first access and kept in memory.
    """

    def __init__(self, count: int, seed: int = 0, sensor: Optional[SensorConfig] = None, scene: Optional[SceneConfig] = None, map_variant: str = "official"):
        if count < 1:
            raise ValueError(f"a procedural set needs at least one scan, got count={count}")
        self.count, self.seed = int(count), int(seed)
        self.sensor, self.scene = sensor or SensorConfig(), scene or SceneConfig()
        self.table = learning_map(map_variant)
        self._scans: dict = {}

    def __len__(self) -> int:
        return self.count

    def raw(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points, raw semantic ids and instance ids (what a ``.bin``/``.label`` pair holds)."""
        return simulate_scan(self.seed, i, self.sensor, self.scene)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        if i not in self._scans:
            pts, sem, _ = self.raw(i)
            self._scans[i] = (pts, self.table[sem])
        return self._scans[i]


@dataclass
class PreparedScan:
    feats: torch.Tensor  # [M, 4] representative features
    coords: torch.Tensor  # [M, 3] representative coordinates in voxel units (continuous)
    labels: torch.Tensor  # [M] representative labels
    inverse: torch.Tensor  # [N] voxel of every point
    point_labels: torch.Tensor  # [N]
    points: np.ndarray  # [N, 4] the (augmented) points


def prepare_scan(points: np.ndarray, labels: np.ndarray, voxel_size: float, augment: bool = False, rng: Optional[np.random.Generator] = None) -> PreparedScan:
    pts = np.asarray(points, dtype=np.float32).copy()
    if augment:
        if rng is None:
            raise ValueError("augmentation needs a random generator")
        theta = rng.uniform(0, 2 * np.pi)
        scale = rng.uniform(0.95, 1.05)
        c, s = np.cos(theta), np.sin(theta)
        rot = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=np.float32) * scale
        pts[:, :3] = pts[:, :3] @ rot
    xyz = pts[:, :3] / voxel_size
    xyz = xyz - xyz.min(0, keepdims=True)
    _, idx, inverse = sparse_quantize(xyz, 1.0, return_index=True, return_inverse=True)
    return PreparedScan(
        feats=torch.from_numpy(pts[idx]),
        coords=torch.from_numpy(xyz[idx].astype(np.float32)),
        labels=torch.from_numpy(np.asarray(labels)[idx].astype(np.int64)),
        inverse=torch.from_numpy(inverse.astype(np.int64)),
        point_labels=torch.from_numpy(np.asarray(labels).astype(np.int64)),
        points=pts,
    )


def collate(scans: Sequence[PreparedScan]) -> Tuple[PointTensor, torch.Tensor]:
    """A batch: one :class:`PointTensor` (batch index in column 0) and the representatives' labels."""
    feats, coords, labels = [], [], []
    for b, s in enumerate(scans):
        feats.append(s.feats)
        coords.append(torch.cat([torch.full((s.coords.shape[0], 1), float(b)), s.coords.double()], 1))
        labels.append(s.labels)
    return PointTensor(torch.cat(feats), torch.cat(coords)), torch.cat(labels)


