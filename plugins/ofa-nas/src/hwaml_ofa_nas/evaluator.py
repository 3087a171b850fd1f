"""``evaluator=ofa_digits``: real accuracy of sub-networks of a trained supernet.

The supernet is trained once with progressive shrinking (or loaded from its
cached checkpoint) when the run asks for the search space; each candidate is
then selected in the supernet, its batch-norm statistics are recalibrated on a
fixed set of training images and its top-1 accuracy is measured on the
validation split. Deploying a candidate extracts it into a static network and
writes a state dict, its configuration and an ONNX file checked with
onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from hwaml import Candidate, DeployResult, EvalResult, RunContext, SearchSpace, hookimpl

from .data import DATASETS, DataSplits, load_dataset
from .progressive_shrinking import (
    DIGITS_EPOCHS,
    DIGITS_LRS,
    calibration_images,
    evaluate_accuracy,
    load_supernet,
    recalibrate_batchnorm,
    train_supernet,
)
from .supernet import OFAMobileNetV3, SupernetConfig, supernet_config

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["OFAEvaluator", "default_checkpoint_path"]


def cache_dir() -> Path:
    return Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "ofa_nas"


def default_checkpoint_path(arch: SupernetConfig, dataset: str, settings: Mapping[str, Any]) -> Path:
    """Cache path of a supernet trained with these settings (shape, data, schedule)."""
    import hashlib

    digest = hashlib.sha1(json.dumps({"arch": arch.to_dict(), "dataset": dataset, **settings}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return cache_dir() / f"supernet_{dataset}_{digest}.pt"


class OFAEvaluator:
    """Evaluate sub-networks of a once-for-all supernet on an image dataset.

    :param arch: supernet preset (``tiny_digits``, ``test_tiny``, ``mobilenetv3_large``) or a dict.
    :param arch_overrides: keys of :class:`~hwaml_ofa_nas.supernet.SupernetConfig` to change.
    :param dataset: ``digits`` (embedded), ``imagefolder`` or ``cifar10`` (binary batches).
    :param data_root: directory for ``imagefolder`` / ``cifar10``.
    :param checkpoint: supernet checkpoint; default: a cache file named after the settings.
    :param train_if_missing: train with progressive shrinking when the checkpoint is missing.
    :param epochs: progressive-shrinking epochs per phase (``full``, ``kernel``, ``depth``, ``expand``).
    :param lrs: learning rates per phase, same keys.
    :param calibration_size: training images used to recalibrate batch norm per candidate.
    """

    #: what a run optimises when its config names no objectives
    default_objectives = {"accuracy": "max"}

    def __init__(
        self,
        arch: Any = "tiny_digits",
        arch_overrides: Optional[Dict[str, Any]] = None,
        dataset: str = "digits",
        data_root: Optional[str] = None,
        val_fraction: float = 0.2,
        checkpoint: Optional[str] = None,
        train_if_missing: bool = True,
        epochs: Optional[Dict[str, Any]] = None,
        lrs: Optional[Dict[str, Any]] = None,
        batch_size: int = 64,
        subnets_per_step: int = 2,
        kd_ratio: float = 1.0,
        calibration_size: int = 500,
        eval_batch_size: int = 256,
        seed: int = 0,
        progress: bool = True,
    ):
        if dataset not in DATASETS:
            raise ValueError(f"dataset: {dataset!r} is not one of {DATASETS}")
        self.arch = supernet_config(arch, arch_overrides)
        self.dataset = dataset
        self.data_root = data_root
        self.val_fraction = val_fraction
        self.train_if_missing = train_if_missing
        self.epochs = dict(epochs or DIGITS_EPOCHS)
        self.lrs = dict(lrs or DIGITS_LRS)
        self.batch_size = batch_size
        self.subnets_per_step = subnets_per_step
        self.kd_ratio = kd_ratio
        self.calibration_size = calibration_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.progress = progress
        settings = {"epochs": self.epochs, "lrs": self.lrs, "batch_size": batch_size, "subnets_per_step": subnets_per_step, "kd_ratio": kd_ratio, "seed": seed, "data_root": data_root, "val_fraction": val_fraction}
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint_path(self.arch, dataset, settings)
        self._net: Optional[OFAMobileNetV3] = None
        self._data: Optional[DataSplits] = None
        self._calib: Optional[torch.Tensor] = None
        self._lock = threading.RLock()

    # -- lazily built state (also inside executor workers) -------------------
    @property
    def data(self) -> DataSplits:
        if self._data is None:
            self._data = load_dataset(self.dataset, self.data_root, max(self.arch.resolutions), self.val_fraction, self.seed)
            if self._data.n_classes != self.arch.n_classes:
                raise ValueError(
                    f"dataset {self.dataset!r} has {self._data.n_classes} classes but the supernet has n_classes={self.arch.n_classes}; "
                    f"set arch_overrides.n_classes={self._data.n_classes}"
                )
        return self._data

    @property
    def supernet(self) -> OFAMobileNetV3:
        with self._lock:
            if self._net is None:
                if self.checkpoint.is_file():
                    self._net = load_supernet(self.checkpoint, expect_arch=self.arch)
                    log.info("ofa_digits: loaded supernet %s", self.checkpoint)
                elif self.train_if_missing:
                    log.info("ofa_digits: no supernet at %s, training one with progressive shrinking", self.checkpoint)
                    self._net, _ = train_supernet(
                        self.arch,
                        data=self.data,
                        epochs=self.epochs,
                        lrs=self.lrs,
                        checkpoint=str(self.checkpoint),
                        seed=self.seed,
                        progress=self.progress,
                        batch_size=self.batch_size,
                        subnets_per_step=self.subnets_per_step,
                        kd_ratio=self.kd_ratio,
                        calibration_size=self.calibration_size,
                    )
                else:
                    raise FileNotFoundError(
                        f"supernet checkpoint {self.checkpoint} does not exist and train_if_missing is false; "
                        f"train one with `hwaml-ofa-nas train --out {self.checkpoint}`"
                    )
                self._net.eval()
            return self._net

    @property
    def calibration(self) -> torch.Tensor:
        if self._calib is None:
            self._calib = calibration_images(self.data.train, self.calibration_size, self.seed)
        return self._calib

    def prepare(self, config: Mapping[str, Any]) -> OFAMobileNetV3:
        """Select ``config`` in the supernet and recalibrate its batch norm."""
        net = self.supernet
        cfg = net.set_active_subnet(config)
        recalibrate_batchnorm(net, self.calibration, cfg["resolution"])
        net.eval()
        return net

    # -- hooks -----------------------------------------------------------------
    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        # training (if needed) happens here, once, before any worker starts
        return self.supernet.space()

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        with self._lock:
            net = self.prepare(candidate.config)
            acc = evaluate_accuracy(net, self.data.val, candidate.config["resolution"], self.eval_batch_size)
        return EvalResult(
            {"accuracy": acc},
            info={"resolution": candidate.config["resolution"], "calibration_images": int(len(self.calibration)), "val_images": len(self.data.val)},
        )

    @hookimpl
    def deploy(self, candidate: Candidate, ctx: RunContext) -> DeployResult:
        from .export import export_onnx, save_subnet
        from .predictors import count_macs, count_params

        with self._lock:
            net = self.prepare(candidate.config)
            sub = net.get_active_subnet().eval()
        acc = evaluate_accuracy(sub, self.data.val, sub.resolution, self.eval_batch_size)
        out = Path(ctx.run_dir) / "deploy"
        stem = out / f"ofa_subnet_trial{candidate.number if candidate.number is not None else 'x'}"
        files = save_subnet(sub, stem, {"accuracy": acc, "dataset": self.dataset})
        onnx = export_onnx(sub, stem.with_suffix(".onnx"))
        files["onnx"] = onnx["path"]
        metrics = {
            "accuracy": acc,
            "onnx_max_abs_diff": onnx["max_abs_diff"],
            "macs_m": count_macs(self.arch, sub.config) / 1e6,
            "params_m": count_params(self.arch, sub.config) / 1e6,
        }
        return DeployResult(files, ok=True, metrics=metrics, message=f"wrote {stem.name}.pt/.json/.onnx", source="ofa_digits")
