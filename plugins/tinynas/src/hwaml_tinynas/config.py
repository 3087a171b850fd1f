"""The settings of ``TinyNASDigits``, grouped by stage.

Hydra passes each group as a mapping (``evaluator.stage1.widths=[0.5,1.0]``);
:func:`hwaml.config.as_config` turns it into the dataclass strictly, so a
misspelled key fails before any work, naming ``stage1.widthz`` and the valid
fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["DataConfig", "DATASETS", "Stage1Config", "TrainingConfig", "FinetuneConfig", "DIGITS_EPOCHS", "DIGITS_LRS"]

#: progressive shrinking on digits: the published phase order, short phases
DIGITS_EPOCHS: Dict[str, Any] = {"full": 10, "kernel": 3, "depth": [2, 3], "expand": [2, 3]}
DIGITS_LRS: Dict[str, Any] = {"full": 0.1, "kernel": 0.03, "depth": [0.01, 0.03], "expand": [0.01, 0.03]}

PHASES = ("full", "kernel", "depth", "expand")

#: ``data.dataset`` choices: scikit-learn's digits, Fashion-MNIST (Debian's IDX files), any MNIST-like IDX folder
DATASETS = ("digits", "fashion_mnist", "idx")


@dataclass(frozen=True)
class DataConfig:
    """The images the supernet trains on, the search ranks by and deploy reports on.

    :param dataset: ``digits`` (scikit-learn, fast; split by the evaluator's
        ``val_fraction``), ``fashion_mnist`` (IDX files of Debian's
        ``dataset-fashion-mnist``, or ``root``) or ``idx`` (any folder of
        MNIST-named IDX files, ``root`` required).
    :param root: the IDX folder (``fashion_mnist``: null is
        :data:`hwaml_tinynas.data.FASHION_MNIST_ROOT`).
    :param val_images: training images held out for ranking (IDX sets).
    :param train_images: of the rest, how many the supernet trains on (null: all).
    :param test_images: test images of the final report (null: all).
    """

    dataset: str = "digits"
    root: Optional[str] = None
    val_images: int = 5000
    train_images: Optional[int] = None
    test_images: Optional[int] = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.dataset == "idx" and not self.root:
            raise ValueError("data.dataset=idx needs data.root (a folder with MNIST-named IDX files)")
        if self.root is not None:
            object.__setattr__(self, "root", str(self.root))
        if self.val_images < 1:
            raise ValueError(f"data.val_images must be >= 1, got {self.val_images}")
        for name in ("train_images", "test_images"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"data.{name} must be >= 1 or null, got {v}")


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1, search-space optimisation.

    :param widths, resolutions: the grid of search spaces ``S(width, resolution)``.
    :param samples_per_space: sub-networks sampled and planned per space.
    :param min_fit_fraction: fraction of a space's samples that must fit for it to qualify.
    :param workers: processes planning spaces in parallel.
    """

    widths: List[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5])
    resolutions: List[int] = field(default_factory=lambda: [12, 16, 20, 24])
    samples_per_space: int = 40
    min_fit_fraction: float = 0.1
    workers: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", [float(w) for w in self.widths])
        object.__setattr__(self, "resolutions", [int(r) for r in self.resolutions])
        if not self.widths or not self.resolutions:
            raise ValueError("stage1.widths and stage1.resolutions must be non-empty")
        if any(w <= 0 for w in self.widths):
            raise ValueError(f"stage1.widths must be > 0, got {self.widths}")
        if any(r < 8 for r in self.resolutions):
            raise ValueError(f"stage1.resolutions must be >= 8, got {self.resolutions}")
        if self.samples_per_space < 1:
            raise ValueError(f"stage1.samples_per_space must be >= 1, got {self.samples_per_space}")
        if not 0.0 <= self.min_fit_fraction <= 1.0:
            raise ValueError(f"stage1.min_fit_fraction must be in [0, 1], got {self.min_fit_fraction}")
        if self.workers < 1:
            raise ValueError(f"stage1.workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class TrainingConfig:
    """Stage 2a, the once-for-all supernet's progressive shrinking.

    :param epochs, lrs: per phase (``full``, ``kernel``, ``depth``, ``expand``);
        depth and expand take a list (one value per added choice).
    :param batch_size: training images per step.
    :param subnets_per_step: sub-networks sampled per step in the elastic phases.
    :param kd_ratio: weight of distillation from the full network.
    :param calibration_size: training images used to recalibrate batch norm.
    """

    epochs: Dict[str, Any] = field(default_factory=lambda: dict(DIGITS_EPOCHS))
    lrs: Dict[str, Any] = field(default_factory=lambda: dict(DIGITS_LRS))
    batch_size: int = 64
    subnets_per_step: int = 2
    kd_ratio: float = 1.0
    calibration_size: int = 300

    def __post_init__(self) -> None:
        for name in ("epochs", "lrs"):
            table = dict(getattr(self, name))
            unknown = sorted(set(table) - set(PHASES))
            if unknown:
                raise ValueError(f"training.{name}.{unknown[0]} is not a progressive-shrinking phase (valid: {', '.join(PHASES)})")
            missing = [k for k in PHASES if k not in table]
            if missing:
                raise ValueError(f"training.{name}.{missing[0]} is missing (give every phase: {', '.join(PHASES)})")
            object.__setattr__(self, name, {k: table[k] for k in PHASES})
        if self.batch_size < 1 or self.subnets_per_step < 1 or self.calibration_size < 1:
            raise ValueError("training.batch_size, training.subnets_per_step and training.calibration_size must be >= 1")
        if self.kd_ratio < 0:
            raise ValueError(f"training.kd_ratio must be >= 0, got {self.kd_ratio}")


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage 2b option: fine-tune each extracted sub-network before scoring it.

    :param epochs: 0 scores the supernet's weights (after batch-norm recalibration).
    :param lr: learning rate of the fine-tune.
    """

    epochs: int = 0
    lr: float = 0.01

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"finetune.epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"finetune.lr must be > 0, got {self.lr}")
