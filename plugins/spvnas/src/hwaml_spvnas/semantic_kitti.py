"""SemanticKITTI: the file format, the 19-class learning map and the sequence split.

Format (Behley et al., ICCV 2019): ``sequences/<SS>/velodyne/<NNNNNN>.bin`` holds
float32 ``x, y, z, remission`` per point; ``sequences/<SS>/labels/<NNNNNN>.label``
one uint32 per point, the semantic id in the low 16 bits and the instance id in
the high 16.

Learning maps:

* ``official``: the semantic-kitti-api map (``semantic-kitti.yaml``): moving
  classes folded into their static ones, ``bus``/``on-rails`` into
  ``other-vehicle``, ``lane-marking`` into ``road``, ``outlier``/
  ``other-structure``/``other-object`` ignored.
* ``spvnas``: the map of the SPVNAS reference (its dataset keeps the 19 class
  *names* and maps a ``moving-X`` label to ``X`` when ``X`` is kept). It
  differs from the official one in four raw labels, which it ignores:
  ``lane-marking`` (60), ``bus`` (13), ``on-rails`` (16), ``moving-on-rails`` (256)
  and ``moving-bus`` (257).

Train ids are ``0..18`` (car ... traffic-sign), ``IGNORE = 255`` for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "IGNORE",
    "RAW_NAMES",
    "SPLITS",
    "learning_map",
    "read_points",
    "read_labels",
    "write_scan",
    "SemanticKITTI",
    "split_labels",
]

IGNORE = 255

#: the 19 evaluated classes, in train-id order
CLASS_NAMES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
    "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk",
    "terrain", "pole", "traffic-sign",
)

#: raw SemanticKITTI semantic ids and their names
RAW_NAMES: Dict[int, str] = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle", 16: "on-rails",
    18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist", 32: "motorcyclist", 40: "road",
    44: "parking", 48: "sidewalk", 49: "other-ground", 50: "building", 51: "fence", 52: "other-structure",
    60: "lane-marking", 70: "vegetation", 71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign",
    99: "other-object", 252: "moving-car", 253: "moving-bicyclist", 254: "moving-person",
    255: "moving-motorcyclist", 256: "moving-on-rails", 257: "moving-bus", 258: "moving-truck",
    259: "moving-other-vehicle",
}

_OFFICIAL_EXTRA = {"bus": "other-vehicle", "on-rails": "other-vehicle", "lane-marking": "road",
                   "moving-on-rails": "other-vehicle", "moving-bus": "other-vehicle"}

#: the official sequence split (sequence 08 validates; 11-21 have no labels)
SPLITS: Dict[str, Tuple[str, ...]] = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{i:02d}" for i in range(11, 22)),
}


def learning_map(variant: str = "official") -> np.ndarray:
    """A lookup table ``raw semantic id (0..65535) -> train id`` (IGNORE elsewhere)."""
    if variant not in ("official", "spvnas"):
        raise ValueError(f"learning map {variant!r}: expected 'official' or 'spvnas'")
    table = np.full(1 << 16, IGNORE, dtype=np.int64)
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    for raw, name in RAW_NAMES.items():
        target = name
        if name.startswith("moving-") and name[len("moving-"):] in index:
            target = name[len("moving-"):]
        elif variant == "official" and name in _OFFICIAL_EXTRA:
            target = _OFFICIAL_EXTRA[name]
        if target in index:
            table[raw] = index[target]
    return table


def read_points(path: str | Path) -> np.ndarray:
    """``[N, 4]`` float32 (x, y, z, remission) of a ``.bin`` scan."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise ValueError(f"{path}: {raw.size} float32 values is not a multiple of 4 (x, y, z, remission)")
    pts = raw.reshape(-1, 4)
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{path}: non-finite coordinates")
    return pts


def read_labels(path: str | Path, n_points: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Semantic ids (low 16 bits) and instance ids (high 16 bits) of a ``.label`` file."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint32)
    if n_points is not None and raw.size != n_points:
        raise ValueError(f"{path}: {raw.size} labels for {n_points} points")
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def split_labels(raw: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    raw = raw.astype(np.uint32)
    return (raw & 0xFFFF).astype(np.int64), (raw >> 16).astype(np.int64)


def write_scan(root: str | Path, sequence: str, index: int, points: np.ndarray, semantic: np.ndarray, instance: Optional[np.ndarray] = None) -> Tuple[Path, Path]:
    """Write one scan in SemanticKITTI's layout; returns the ``.bin`` and ``.label`` paths."""
    seq = Path(root) / "sequences" / sequence
    (seq / "velodyne").mkdir(parents=True, exist_ok=True)
    (seq / "labels").mkdir(parents=True, exist_ok=True)
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must be [N, 4], got {pts.shape}")
    inst = np.zeros(len(pts), dtype=np.uint32) if instance is None else instance.astype(np.uint32)
    label = (semantic.astype(np.uint32) & 0xFFFF) | (inst << 16)
    bin_path = seq / "velodyne" / f"{index:06d}.bin"
    lab_path = seq / "labels" / f"{index:06d}.label"
    pts.tofile(bin_path)
    label.astype(np.uint32).tofile(lab_path)
    return bin_path, lab_path


@dataclass
class SemanticKITTI:
    """Scans of a SemanticKITTI tree: ``root/sequences/<SS>/{velodyne,labels}``.

    ``split`` is ``train``/``val``/``test`` (the official sequences) or an explicit
    list of sequence names; ``max_scans`` keeps the first scans of each sequence.
    ``__getitem__`` returns ``(points [N, 4] float32, train ids [N] int64)``.
    """

    root: str
    split: str | Sequence[str] = "train"
    map_variant: str = "official"
    max_scans: Optional[int] = None

    def __post_init__(self) -> None:
        root = Path(self.root)
        if not (root / "sequences").is_dir():
            raise FileNotFoundError(f"{root}: no 'sequences' folder (expected SemanticKITTI's layout sequences/<SS>/velodyne/*.bin)")
        seqs = SPLITS[self.split] if isinstance(self.split, str) else tuple(self.split)
        if isinstance(self.split, str) and self.split not in SPLITS:
            raise ValueError(f"split {self.split!r}: expected one of {sorted(SPLITS)} or a list of sequences")
        self.table = learning_map(self.map_variant)
        self.files: List[Tuple[Path, Optional[Path]]] = []
        for s in seqs:
            vel = root / "sequences" / s / "velodyne"
            if not vel.is_dir():
                continue
            bins = sorted(vel.glob("*.bin"))
            if self.max_scans is not None:
                bins = bins[: self.max_scans]
            for b in bins:
                lab = root / "sequences" / s / "labels" / (b.stem + ".label")
                self.files.append((b, lab if lab.exists() else None))
        if not self.files:
            raise FileNotFoundError(f"{root}: no scans in sequences {list(seqs)}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        b, lab = self.files[i]
        pts = read_points(b)
        if lab is None:
            return pts, np.full(len(pts), IGNORE, dtype=np.int64)
        sem, _ = read_labels(lab, len(pts))
        return pts, self.table[sem]
