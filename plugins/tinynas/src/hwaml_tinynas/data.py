"""scikit-learn's digits as the three splits TinyNAS needs.

The images come from :func:`hwaml_tinyengine.data.digits_split` (one channel,
upsampled bilinearly to the resolution, values in [-1, 1]): its test split
(30 %) is what deploy scores the generated C on; its training split is split
again (stratified) into the images the supernet trains on and the validation
images the search ranks sub-networks by, so the reported test accuracy was
never looked at during the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hwaml_ofa_nas.data import DataSplits

__all__ = ["DigitsSplits", "digits_splits"]


@dataclass(frozen=True)
class DigitsSplits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    resolution: int

    def ofa(self) -> DataSplits:
        """Train and validation splits in the form ofa-nas trains on."""
        return DataSplits(TensorDataset(self.x_train, self.y_train), TensorDataset(self.x_val, self.y_val), 10, [str(i) for i in range(10)], self.resolution)


@lru_cache(maxsize=8)
def digits_splits(resolution: int, seed: int = 0, val_fraction: float = 0.2) -> DigitsSplits:
    """Train / validation / test digits at ``resolution`` (fixed by ``seed``)."""
    from sklearn.model_selection import train_test_split

    from hwaml_tinyengine.data import digits_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    xtr, ytr, xte, yte = digits_split(int(resolution), seed=int(seed))
    idx = np.arange(len(ytr))
    tr, va = train_test_split(idx, test_size=val_fraction, random_state=int(seed), stratify=ytr.numpy())
    tr, va = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(va))
    return DigitsSplits(xtr[tr], ytr[tr], xtr[va], ytr[va], xte, yte, int(resolution))
