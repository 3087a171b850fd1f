"""Image classification data: scikit-learn digits (embedded default), ImageFolder
directories and CIFAR-10 binary batches.

Every loader returns a :class:`DataSplits` of two ``torch.utils.data.Dataset``
objects that yield ``(float tensor C x H x W, int label)`` at a fixed size (the
supernet's largest resolution); smaller resolutions are made per batch with
:func:`resize_batch`, as OFA's elastic resolution does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

log = logging.getLogger("hwaml.ofa_nas")

__all__ = [
    "DataSplits",
    "DataError",
    "load_digits_dataset",
    "ImageFolderDataset",
    "load_image_folder",
    "read_cifar10_batch",
    "load_cifar10_binary",
    "load_dataset",
    "resize_batch",
    "DATASETS",
]

DATASETS = ("digits", "fashion_mnist", "idx", "imagefolder", "cifar10")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")
CIFAR_RECORD = 1 + 32 * 32 * 3


class DataError(ValueError):
    """A data file or directory that cannot be read, named in the message."""


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    n_classes: int
    classes: List[str]
    image_size: int


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a batch to ``size x size`` (no-op at that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=size < images.shape[-1])


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    idx = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(va)


# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


def load_digits_dataset(image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images), upsampled bilinearly to
    ``image_size``, replicated to 3 channels and normalised; a stratified split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    x = _normalise(x.repeat(1, 3, 1, 1))
    y = torch.tensor(d.target, dtype=torch.long)
    tr, va = _stratified_split(d.target, val_fraction, seed)
    return DataSplits(TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va]), 10, [str(i) for i in range(10)], image_size)


# ---------------------------------------------------------------------------
# ImageFolder
# ---------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """``root/<class name>/<image file>``, read lazily with Pillow, converted to
    RGB, resized (shorter side, then centre crop) to ``image_size`` and normalised.

    Classes are the sorted sub-directory names, or ``classes`` when given (so a
    validation folder uses the training folder's label order).
    """

    def __init__(self, root: str | Path, image_size: int, classes: Optional[Sequence[str]] = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"ImageFolder root {self.root} is not a directory")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"ImageFolder root {self.root} has no class sub-directories (expected root/<class>/<image>)")
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise DataError(f"ImageFolder {self.root}: class folder(s) {unknown} are not among the training classes {self.classes}")
        self.image_size = int(image_size)
        self.samples: List[Tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    self.samples.append((path, label))
        if not self.samples:
            raise DataError(f"ImageFolder {self.root}: no image files with extensions {IMAGE_EXTENSIONS}")
        self.targets = np.array([s[1] for s in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                scale = self.image_size / min(w, h)
                img = img.resize((max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))), Image.BILINEAR)
                w, h = img.size
                left, top = (w - self.image_size) // 2, (h - self.image_size) // 2
                img = img.crop((left, top, left + self.image_size, top + self.image_size))
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from exc
        return _normalise(torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0))[0]

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self._load(path), int(label)


def load_image_folder(root: str | Path, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """An ImageFolder tree. With ``root/train`` and ``root/val`` those are the
    splits; otherwise ``root`` itself is split (stratified) by ``val_fraction``."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train = ImageFolderDataset(root / "train", image_size)
        val = ImageFolderDataset(root / "val", image_size, classes=train.classes)
        return DataSplits(train, val, len(train.classes), train.classes, image_size)
    full = ImageFolderDataset(root, image_size)
    tr, va = _stratified_split(full.targets, val_fraction, seed)
    return DataSplits(Subset(full, tr.tolist()), Subset(full, va.tolist()), len(full.classes), full.classes, image_size)


# ---------------------------------------------------------------------------
# CIFAR-10 binary version
# ---------------------------------------------------------------------------


def read_cifar10_batch(path: str | Path) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes
    (red, green, blue planes of 32x32). Returns uint8 images N x 3 x 32 x 32 and labels."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(f"{path}: size {raw.size} bytes is not a positive multiple of the {CIFAR_RECORD}-byte CIFAR-10 record")
    records = raw.reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DataError(f"{path}: record {int(bad[0])} has label {int(labels[bad[0]])}, CIFAR-10 labels are 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _cifar_tensors(images: np.ndarray, labels: np.ndarray, image_size: int) -> TensorDataset:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = _normalise(resize_batch(x, image_size))
    return TensorDataset(x, torch.from_numpy(labels))


def load_cifar10_binary(root: str | Path, image_size: int = 32) -> DataSplits:
    """CIFAR-10's binary distribution: ``data_batch_*.bin`` for training and
    ``test_batch.bin`` for validation (the ``cifar-10-batches-bin`` folder, or
    its parent); class names from ``batches.meta.txt`` when present."""
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    train_files = sorted(root.glob("data_batch_*.bin"))
    test_file = root / "test_batch.bin"
    if not train_files or not test_file.is_file():
        raise DataError(f"{root}: expected data_batch_*.bin and test_batch.bin (CIFAR-10 binary version)")
    parts = [read_cifar10_batch(p) for p in train_files]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xva, yva = read_cifar10_batch(test_file)
    meta = root / "batches.meta.txt"
    classes = [c.strip() for c in meta.read_text().splitlines() if c.strip()] if meta.is_file() else [str(i) for i in range(10)]
    log.info("CIFAR-10 binary: %d training and %d validation images from %s", len(ytr), len(yva), root)
    return DataSplits(_cifar_tensors(xtr, ytr, image_size), _cifar_tensors(xva, yva, image_size), 10, classes, image_size)


def load_idx_dataset(root: str | Path, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0, train_images: Optional[int] = None, classes: Optional[Sequence[str]] = None) -> DataSplits:
    """An MNIST-like IDX folder (Fashion-MNIST from Debian's ``dataset-fashion-mnist``
    by default, :mod:`hwaml_ofa_nas.idx`): ``val_fraction`` of the training images
    (seeded, stratified) held out for ranking, the supernet trained on the rest (or
    the first ``train_images`` of them); grey images upsampled bilinearly to
    ``image_size``, replicated to 3 channels and normalised like the other sets.
    The IDX test files are never read here (a final report's business)."""
    from .idx import find_idx_files, read_labelled_pair

    files = find_idx_files(root)
    xs, ys = read_labelled_pair(*files["train"])
    if xs.ndim != 3:
        raise ValueError(f"{files['train'][0]}: expected N x H x W grey images, got shape {xs.shape}")
    tr, va = _stratified_split(ys, val_fraction, seed)
    if train_images is not None:
        if int(train_images) < 1:
            raise ValueError(f"train_images must be >= 1 or null, got {train_images}")
        tr = np.sort(np.random.default_rng(int(seed)).permutation(tr)[: int(train_images)])
    n_classes = int(ys.max()) + 1
    names = list(classes) if classes is not None else [str(i) for i in range(n_classes)]

    def tensors(idx: np.ndarray) -> TensorDataset:
        x = torch.from_numpy(np.ascontiguousarray(xs[idx], dtype=np.float32)).unsqueeze(1) / 255.0
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
        return TensorDataset(_normalise(x.repeat(1, 3, 1, 1)), torch.as_tensor(ys[idx].astype(np.int64)))

    return DataSplits(tensors(tr), tensors(va), n_classes, names, image_size)


def load_dataset(name: str, root: Optional[str] = None, image_size: int = 32, val_fraction: float = 0.2, seed: int = 0, train_images: Optional[int] = None) -> DataSplits:
    """Dispatch on ``name`` (``digits``, ``fashion_mnist``, ``idx``, ``imagefolder``, ``cifar10``)."""
    if name == "digits":
        return load_digits_dataset(image_size, val_fraction, seed)
    if name == "fashion_mnist":
        from .idx import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT

        return load_idx_dataset(root or FASHION_MNIST_ROOT, image_size, val_fraction, seed, train_images, FASHION_MNIST_CLASSES)
    if name == "idx":
        if not root:
            raise ValueError("dataset 'idx' needs data_root (a folder of MNIST-named IDX files)")
        return load_idx_dataset(root, image_size, val_fraction, seed, train_images)
    if name in ("imagefolder", "cifar10"):
        if not root:
            raise ValueError(f"dataset {name!r} needs data_root (a directory)")
        if name == "imagefolder":
            return load_image_folder(root, image_size, val_fraction, seed)
        return load_cifar10_binary(root, image_size)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
