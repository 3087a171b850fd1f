"""The three splits TinyNAS needs: scikit-learn's digits or an MNIST-like IDX set (Fashion-MNIST).

The images come from :func:`hwaml_tinyengine.data.digits_split` (one channel,
upsampled bilinearly to the resolution, values in [-1, 1]): its test split
(30 %) is what deploy scores the generated C on; its training split is split
again (stratified) into the images the supernet trains on and the validation
images the search ranks sub-networks by, so the reported test accuracy was
never looked at during the search.

:func:`idx_splits` does the same for an MNIST-like data set stored as IDX
files (:mod:`hwaml_tinynas.idx`; by default Fashion-MNIST from Debian's
``dataset-fashion-mnist`` package in :data:`FASHION_MNIST_ROOT`): a seeded
permutation of the training files holds out ``val_images`` (at least 5,000 by
default) for ranking, the supernet trains on (up to ``train_images`` of) the
rest, and the test files are only the final report's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hwaml_ofa_nas.data import DataSplits

__all__ = ["Splits", "DigitsSplits", "digits_splits", "idx_splits", "find_idx_files", "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES"]

# the IDX reader and folder layout live in hwaml-ofa-nas (both plugins load Fashion-MNIST)
from hwaml_ofa_nas.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, find_idx_files  # noqa: E402


@dataclass(frozen=True)
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    resolution: int
    classes: tuple = tuple(str(i) for i in range(10))

    def ofa(self) -> DataSplits:
        """Train and validation splits in the form ofa-nas trains on."""
        return DataSplits(TensorDataset(self.x_train, self.y_train), TensorDataset(self.x_val, self.y_val), len(self.classes), list(self.classes), self.resolution)


DigitsSplits = Splits  # the name before IDX data sets


@lru_cache(maxsize=8)
def digits_splits(resolution: int, seed: int = 0, val_fraction: float = 0.2) -> Splits:
    """Train / validation / test digits at ``resolution`` (fixed by ``seed``)."""
    from sklearn.model_selection import train_test_split

    from hwaml_tinyengine.data import digits_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    xtr, ytr, xte, yte = digits_split(int(resolution), seed=int(seed))
    idx = np.arange(len(ytr))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=int(seed), stratify=ytr.numpy())
    tr, va = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(va))
    return Splits(xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte, int(resolution))


def _to_tensor(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 N x H x W (or N x C x H x W) -> float N x C x R x R in [-1, 1]."""
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise ValueError(f"images must be N x H x W or N x C x H x W, got shape {tuple(x.shape)}")
    x = x / 127.5 - 1.0
    if x.shape[-2:] != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.contiguous()


@lru_cache(maxsize=4)
def idx_splits(
    resolution: int,
    seed: int = 0,
    root: str = FASHION_MNIST_ROOT,
    val_images: int = 5000,
    train_images: Optional[int] = None,
    test_images: Optional[int] = None,
    classes: Optional[Tuple[str, ...]] = None,
) -> Splits:
    """Train / validation / test of the IDX set in ``root`` at ``resolution``.

    ``val_images`` training images (seeded permutation) are held out for
    ranking; the supernet trains on the next ``train_images`` (None: all the
    rest); the test split is the first ``test_images`` of the test files
    (None: all), used only for the final report."""
    from hwaml_ofa_nas.idx import read_labelled_pair

    files = find_idx_files(root)
    xtr, ytr = read_labelled_pair(*files["train"])
    xte, yte = read_labelled_pair(*files["test"])
    if val_images < 1 or val_images >= len(ytr):
        raise ValueError(f"data.val_images must be in [1, {len(ytr) - 1}] for {files['train'][0]} ({len(ytr)} images), got {val_images}")
    perm = np.random.default_rng(int(seed)).permutation(len(ytr))
    va, tr = perm[:val_images], perm[val_images:]
    if train_images is not None:
        if train_images < 1:
            raise ValueError(f"data.train_images must be >= 1 or null, got {train_images}")
        tr = tr[: int(train_images)]
    tr, va = np.sort(tr), np.sort(va)
    nte = len(yte) if test_images is None else int(test_images)
    if nte < 1:
        raise ValueError(f"data.test_images must be >= 1 or null, got {test_images}")
    n_classes = int(max(ytr.max(), yte.max())) + 1
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(n_classes))
    if len(names) < n_classes:
        raise ValueError(f"{len(names)} class names for labels up to {n_classes - 1}")
    lab = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
    r = int(resolution)
    return Splits(_to_tensor(xtr[tr], r), lab(ytr[tr]), _to_tensor(xtr[va], r), lab(ytr[va]), _to_tensor(xte[:nte], r), lab(yte[:nte]), r, names)
