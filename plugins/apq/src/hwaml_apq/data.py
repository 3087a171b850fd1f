"""Data of the apq evaluators: Fashion-MNIST (IDX files, Debian's
``dataset-fashion-mnist``) by default, scikit-learn digits for tests, any
MNIST-like IDX folder.

Every loader returns :class:`hwaml_ofa_nas.data.DataSplits` (tensors at the
supernet's largest resolution), the type the OFA supernet trainer reads.
Fashion-MNIST's own test split (``t10k``) is the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from hwaml_ofa_nas.data import DataError, DataSplits, load_digits_dataset

__all__ = ["DATASETS", "FASHION_MNIST_ROOT", "FASHION_CLASSES", "load_idx_folder", "load_data"]

DATASETS = ("fashion_mnist", "idx", "digits")
#: where Debian's dataset-fashion-mnist puts the IDX files
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
#: mean and standard deviation of Fashion-MNIST's training pixels (in [0, 1])
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    hint = " (install it: apt-get install dataset-fashion-mnist)" if str(root) == FASHION_MNIST_ROOT else ""
    raise DataError(f"{root}: no {stem}[.gz] IDX file{hint}")


def _tensors(images: np.ndarray, labels: np.ndarray, size: int, channels: int, limit: Optional[int], seed: int) -> TensorDataset:
    idx = np.arange(len(labels))
    if limit is not None and limit < len(idx):
        idx = np.sort(np.random.default_rng(seed).choice(len(idx), int(limit), replace=False))
    x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - FASHION_MEAN) / FASHION_STD
    if channels != 1:
        x = x.repeat(1, channels, 1, 1)
    return TensorDataset(x.contiguous(), torch.from_numpy(labels[idx].astype(np.int64)))


def load_idx_folder(root: str | Path, image_size: int, channels: int = 1, train_limit: Optional[int] = None, val_limit: Optional[int] = None, seed: int = 0) -> DataSplits:
    """An MNIST-like IDX folder (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte``,
    ``t10k-...``); ``*_limit`` keep a seeded random subset of each split."""
    from hwaml_ofa_nas.idx import read_labelled_pair

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"IDX folder {root} is not a directory")
    xtr, ytr = read_labelled_pair(_find(root, "train-images-idx3-ubyte"), _find(root, "train-labels-idx1-ubyte"))
    xva, yva = read_labelled_pair(_find(root, "t10k-images-idx3-ubyte"), _find(root, "t10k-labels-idx1-ubyte"))
    if xtr.ndim != 3:
        raise DataError(f"{root}: expected N x H x W grey images, got dims {xtr.shape}")
    n_classes = int(max(ytr.max(), yva.max())) + 1
    classes = FASHION_CLASSES if n_classes == 10 else [str(i) for i in range(n_classes)]
    return DataSplits(
        _tensors(np.asarray(xtr), np.asarray(ytr), image_size, channels, train_limit, seed),
        _tensors(np.asarray(xva), np.asarray(yva), image_size, channels, val_limit, seed + 1),
        n_classes,
        classes,
        image_size,
    )


def load_data(dataset: str, data_root: Optional[str], image_size: int, channels: int, val_fraction: float, train_limit: Optional[int], val_limit: Optional[int], seed: int) -> DataSplits:
    """Dispatch on ``dataset`` (``fashion_mnist``, ``idx``, ``digits``)."""
    if dataset == "digits":
        if channels != 3:
            raise ValueError(f"dataset digits gives 3-channel images but the supernet has in_channels={channels}")
        d = load_digits_dataset(image_size, val_fraction, seed)
        if train_limit is not None or val_limit is not None:
            from torch.utils.data import Subset

            d = DataSplits(
                Subset(d.train, range(min(len(d.train), train_limit or len(d.train)))),
                Subset(d.val, range(min(len(d.val), val_limit or len(d.val)))),
                d.n_classes,
                d.classes,
                d.image_size,
            )
        return d
    if dataset == "fashion_mnist":
        return load_idx_folder(data_root or FASHION_MNIST_ROOT, image_size, channels, train_limit, val_limit, seed)
    if dataset == "idx":
        if not data_root:
            raise ValueError("dataset idx needs data_root (a folder of IDX files)")
        return load_idx_folder(data_root, image_size, channels, train_limit, val_limit, seed)
    raise ValueError(f"dataset: {dataset!r} is not one of {DATASETS}")
