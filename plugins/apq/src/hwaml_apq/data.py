"""Data of the apq evaluators: Fashion-MNIST (IDX files, Debian's
``dataset-fashion-mnist``) by default, scikit-learn digits for tests, any
MNIST-like IDX folder.

Every loader returns :class:`hwaml_ofa_nas.data.DataSplits` (tensors at the
supernet's largest resolution), the type the OFA supernet trainer reads.

IDX sets (Fashion-MNIST) follow ofa-nas's and tinynas's Fashion-MNIST path:
``val_images`` training images (a seeded, stratified draw) are held out; the
supernet trains on (a seeded subset of) the rest, every search decision
(batch-norm calibration aside) is made on the held-out images, and the test
files (``t10k``) are read only by :func:`load_idx_test` for the final report
(the evaluator's deploy and ``test_accuracy``). Digits has no test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from hwaml_ofa_nas.data import DataError, DataSplits, load_digits_dataset

__all__ = ["DATASETS", "FASHION_MNIST_ROOT", "FASHION_CLASSES", "MIN_FASHION_VAL_IMAGES", "load_idx_folder", "load_idx_test", "load_data"]

DATASETS = ("fashion_mnist", "idx", "digits")
#: where Debian's dataset-fashion-mnist puts the IDX files
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
#: mean and standard deviation of Fashion-MNIST's training pixels (in [0, 1])
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
#: held-out training images below which Fashion-MNIST accuracies are not resolvable (one image = 0.02%)
MIN_FASHION_VAL_IMAGES = 5000


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    hint = " (install it: apt-get install dataset-fashion-mnist)" if str(root) == FASHION_MNIST_ROOT else ""
    raise DataError(f"{root}: no {stem}[.gz] IDX file{hint}")


def _tensors(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, size: int, channels: int) -> TensorDataset:
    x = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - FASHION_MEAN) / FASHION_STD
    if channels != 1:
        x = x.repeat(1, channels, 1, 1)
    return TensorDataset(x.contiguous(), torch.from_numpy(labels[idx].astype(np.int64)))


def _classes(n_classes: int) -> List[str]:
    return list(FASHION_CLASSES) if n_classes == 10 else [str(i) for i in range(n_classes)]


def held_out_split(labels: np.ndarray, val_images: int, train_limit: Optional[int], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices into the training files: ``val_images`` held out
    (stratified by label, seeded), the training indices the rest, or a seeded
    subset of ``train_limit`` of them; both sorted, never overlapping."""
    from sklearn.model_selection import train_test_split

    n = len(labels)
    if not 1 <= int(val_images) < n:
        raise ValueError(f"data.val_images must be in [1, {n - 1}] for {n} training images, got {val_images}")
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 and int(val_images) >= len(counts[counts > 0]) else None
    tr, va = train_test_split(np.arange(n), test_size=int(val_images), random_state=int(seed), stratify=stratify)
    if train_limit is not None:
        if int(train_limit) < 1:
            raise ValueError(f"data.train_limit must be >= 1 or null, got {train_limit}")
        tr = np.random.default_rng(int(seed)).permutation(tr)[: int(train_limit)]
    return np.sort(tr), np.sort(va)


def load_idx_folder(root: str | Path, image_size: int, channels: int = 1, val_images: int = 5000, train_limit: Optional[int] = None, seed: int = 0) -> DataSplits:
    """Train and validation splits of an MNIST-like IDX folder
    (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte``): both drawn
    from the training files (:func:`held_out_split`); the test files are not read."""
    from hwaml_ofa_nas.idx import read_labelled_pair

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"IDX folder {root} is not a directory")
    xtr, ytr = read_labelled_pair(_find(root, "train-images-idx3-ubyte"), _find(root, "train-labels-idx1-ubyte"))
    xtr, ytr = np.asarray(xtr), np.asarray(ytr)
    if xtr.ndim != 3:
        raise DataError(f"{root}: expected N x H x W grey images, got dims {xtr.shape}")
    tr, va = held_out_split(ytr, val_images, train_limit, seed)
    n_classes = int(ytr.max()) + 1
    return DataSplits(_tensors(xtr, ytr, tr, image_size, channels), _tensors(xtr, ytr, va, image_size, channels), n_classes, _classes(n_classes), image_size)


def load_idx_test(root: str | Path, image_size: int, channels: int = 1, limit: Optional[int] = None) -> TensorDataset:
    """The test files (``t10k-...``) of an IDX folder, preprocessed as the
    training images (the first ``limit`` of them; ``None``: all): the final
    report's split, never searched on."""
    from hwaml_ofa_nas.idx import read_labelled_pair

    root = Path(root)
    xte, yte = read_labelled_pair(_find(root, "t10k-images-idx3-ubyte"), _find(root, "t10k-labels-idx1-ubyte"))
    xte, yte = np.asarray(xte), np.asarray(yte)
    n = len(yte) if limit is None else int(limit)
    if not 1 <= n <= len(yte):
        raise ValueError(f"data.test_limit must be in [1, {len(yte)}] or null, got {limit}")
    return _tensors(xte, yte, np.arange(n), image_size, channels)


def load_data(dataset: str, data_root: Optional[str], image_size: int, channels: int, val_fraction: float, train_limit: Optional[int], val_limit: Optional[int], seed: int, val_images: int = MIN_FASHION_VAL_IMAGES) -> DataSplits:
    """Dispatch on ``dataset`` (``fashion_mnist``, ``idx``, ``digits``). IDX sets
    hold out ``val_images`` training images (``val_limit`` applies to digits only)."""
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
    if dataset not in ("fashion_mnist", "idx"):
        raise ValueError(f"dataset: {dataset!r} is not one of {DATASETS}")
    if val_limit is not None:
        raise ValueError(f"data.val_limit is for digits; dataset {dataset!r} validates on data.val_images={val_images} held-out training images")
    if dataset == "idx" and not data_root:
        raise ValueError("dataset idx needs data_root (a folder of IDX files)")
    return load_idx_folder(data_root or FASHION_MNIST_ROOT, image_size, channels, val_images, train_limit, seed)


def idx_root(dataset: str, data_root: Optional[str]) -> Optional[str]:
    """The IDX folder of ``dataset`` (``None`` for digits, which has no test files)."""
    if dataset == "digits":
        return None
    return data_root or FASHION_MNIST_ROOT
