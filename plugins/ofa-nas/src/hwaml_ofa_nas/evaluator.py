"""``evaluator=ofa_digits``: real accuracy of sub-networks of a trained supernet.

The supernet is trained once with progressive shrinking (or loaded from its
cached checkpoint) when the run asks for the search space; each candidate is
then selected in the supernet, its batch-norm statistics are recalibrated on a
fixed set of training images and its top-1 accuracy is measured on the
validation split.

The evaluator is the component that knows how a candidate becomes a network
(``build_model``): while costing, the static sub-network built from the
configuration alone (untrained, no supernet needed); for a finished trial, the
sub-network extracted from the trial's trained supernet (found through the
trial's artifacts) with batch norm recalibrated. Deploying a trial writes a
state dict, its configuration and an ONNX file checked with onnxruntime.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from hwaml import BuiltModel, Candidate, DeployResult, EvalResult, RunContext, SearchSpace, Trial, hookimpl
from hwaml.config import as_config

from .data import DATASETS, DataSplits, load_dataset, resize_batch
from .progressive_shrinking import (
    DIGITS_EPOCHS,
    DIGITS_LRS,
    calibration_images,
    evaluate_accuracy,
    load_supernet,
    recalibrate_batchnorm,
    train_supernet,
)
from .supernet import MobileNetV3Subnet, OFAMobileNetV3, SupernetConfig, build_subnet, supernet_config

log = logging.getLogger("hwaml.ofa_nas")

__all__ = ["OFAEvaluator", "TrainingConfig", "default_checkpoint_path", "SUPERNET_ARTIFACT"]

#: the name under which a trial's trained supernet is listed in ``EvalResult.artifacts``
SUPERNET_ARTIFACT = "supernet"
#: the fine-tuned sub-network of a trial (evaluator finetune_epochs > 0)
FINETUNED_ARTIFACT = "finetuned"


def cache_dir() -> Path:
    return Path(os.environ.get("HWAML_CACHE_DIR", Path.home() / ".cache" / "hwaml")) / "ofa_nas"


def default_checkpoint_path(arch: SupernetConfig, dataset: str, settings: Mapping[str, Any]) -> Path:
    """Cache path of a supernet trained with these settings (shape, data, schedule)."""
    import hashlib

    digest = hashlib.sha1(json.dumps({"arch": arch.to_dict(), "dataset": dataset, **settings}, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return cache_dir() / f"supernet_{dataset}_{digest}.pt"


@dataclass(frozen=True)
class TrainingConfig:
    """How the supernet is trained with progressive shrinking (``training:`` in the config).

    :param epochs: epochs per phase (``full``, ``kernel``, ``depth``, ``expand``;
        depth and expand take one number per added choice); ``None``: the digits defaults.
    :param lrs: learning rates per phase, same keys.
    :param batch_size: training images per step.
    :param subnets_per_step: sub-networks sampled per step (OFA's dynamic batch size).
    :param kd_ratio: weight of the distillation loss from the full network.
    """

    epochs: Optional[Dict[str, Any]] = None
    lrs: Optional[Dict[str, Any]] = None
    batch_size: int = 64
    subnets_per_step: int = 2
    kd_ratio: float = 1.0

    def resolved_epochs(self) -> Dict[str, Any]:
        return dict(self.epochs or DIGITS_EPOCHS)

    def resolved_lrs(self) -> Dict[str, Any]:
        return dict(self.lrs or DIGITS_LRS)


def load_or_train_supernet(arch: SupernetConfig, checkpoint: Path, train_if_missing: bool, data: Any, training: "TrainingConfig", seed: int, progress: bool, calibration_size: int, name: str) -> OFAMobileNetV3:
    """The supernet at ``checkpoint``, or one trained with progressive shrinking on
    ``data()`` (and saved there) when it is missing and ``train_if_missing``; in eval
    mode. Shared by every evaluator that scores sub-networks of an OFA supernet."""
    if checkpoint.is_file():
        net = load_supernet(checkpoint, expect_arch=arch)
        log.info("%s: loaded supernet %s", name, checkpoint)
    elif train_if_missing:
        log.info("%s: no supernet at %s, training one with progressive shrinking", name, checkpoint)
        t = training
        net, _ = train_supernet(
            arch,
            data=data(),
            epochs=t.resolved_epochs(),
            lrs=t.resolved_lrs(),
            checkpoint=str(checkpoint),
            seed=seed,
            progress=progress,
            batch_size=t.batch_size,
            subnets_per_step=t.subnets_per_step,
            kd_ratio=t.kd_ratio,
            calibration_size=calibration_size,
        )
    else:
        raise FileNotFoundError(
            f"supernet checkpoint {checkpoint} does not exist and train_if_missing is false; "
            f"train one with `hwaml-ofa-nas train --out {checkpoint}`"
        )
    net.eval()
    return net


class OFAEvaluator:
    """Evaluate sub-networks of a once-for-all supernet on an image dataset.

    :param arch: supernet preset (``tiny_digits``, ``test_tiny``, ``mobilenetv3_large``) or a dict.
    :param arch_overrides: keys of :class:`~hwaml_ofa_nas.supernet.SupernetConfig` to change.
    :param dataset: ``digits`` (embedded), ``imagefolder`` or ``cifar10`` (binary batches).
    :param data_root: directory for ``imagefolder`` / ``cifar10``.
    :param val_fraction: held-out fraction when the dataset has no validation split.
    :param train_images: IDX sets (``fashion_mnist``, ``idx``): train on this many of
        the remaining training images (``None``: all).
    :param checkpoint: supernet checkpoint; default: a cache file named after the settings.
    :param train_if_missing: train with progressive shrinking when the checkpoint is missing.
    :param training: a :class:`TrainingConfig` or a mapping of its fields.
    :param calibration_size: training images used to recalibrate batch norm per candidate.
    :param eval_batch_size: images per batch when measuring accuracy.
    :param finetune_epochs: fine-tune each extracted sub-network this many epochs
        before scoring it (0, the default: score the supernet's weights as OFA
        does). Validation accuracy is reported after every epoch
        (``ctx.report``), so a pruner (``pruner=hyperband``) stops bad trials;
        the fine-tuned weights are the trial's ``finetuned`` artifact, which
        ``build_model`` and deploy use.
    :param finetune_lr: its learning rate (SGD, cosine).
    :param name: the component's name (``DeployResult.source``, ``BuiltModel.source``).

    Lazy state sits behind explicit methods (:meth:`data`, :meth:`supernet`,
    :meth:`calibration`): constructing or registering the evaluator does no work.
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
        train_images: Optional[int] = None,
        checkpoint: Optional[str] = None,
        train_if_missing: bool = True,
        training: Union[TrainingConfig, Mapping[str, Any], None] = None,
        calibration_size: int = 500,
        eval_batch_size: int = 256,
        seed: int = 0,
        progress: bool = True,
        name: str = "ofa_digits",
        finetune_epochs: int = 0,
        finetune_lr: float = 0.01,
    ):
        if dataset not in DATASETS:
            raise ValueError(f"dataset: {dataset!r} is not one of {DATASETS}")
        self.arch = supernet_config(arch, arch_overrides)
        self.dataset = dataset
        self.data_root = data_root
        self.val_fraction = val_fraction
        self.train_images = train_images
        self.train_if_missing = train_if_missing
        self.training = as_config(TrainingConfig, training, "training")
        self.calibration_size = calibration_size
        self.eval_batch_size = eval_batch_size
        if int(finetune_epochs) < 0:
            raise ValueError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
        if not float(finetune_lr) > 0:
            raise ValueError(f"finetune_lr must be > 0, got {finetune_lr}")
        self.finetune_epochs = int(finetune_epochs)
        self.finetune_lr = float(finetune_lr)
        self.seed = seed
        self.progress = progress
        self.name = name
        t = self.training
        # the same settings (and so the same cache file) as before the training group existed
        settings = {
            "epochs": t.resolved_epochs(),
            "lrs": t.resolved_lrs(),
            "batch_size": t.batch_size,
            "subnets_per_step": t.subnets_per_step,
            "kd_ratio": t.kd_ratio,
            "seed": seed,
            "data_root": data_root,
            "val_fraction": val_fraction,
        }
        if train_images is not None:
            settings["train_images"] = int(train_images)
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint_path(self.arch, dataset, settings)
        self._space = OFAMobileNetV3.space_for(self.arch)  # cheap: no weights
        self._net: Optional[OFAMobileNetV3] = None
        self._data: Optional[DataSplits] = None
        self._calib: Optional[torch.Tensor] = None
        self._lock = threading.RLock()

    # -- lazily built state (also inside executor workers) -------------------
    def data(self) -> DataSplits:
        """The dataset splits (loaded on first call)."""
        with self._lock:
            if self._data is None:
                data = load_dataset(self.dataset, self.data_root, max(self.arch.resolutions), self.val_fraction, self.seed, self.train_images)
                if data.n_classes != self.arch.n_classes:
                    raise ValueError(
                        f"dataset {self.dataset!r} has {data.n_classes} classes but the supernet has n_classes={self.arch.n_classes}; "
                        f"set arch_overrides.n_classes={data.n_classes}"
                    )
                self._data = data
            return self._data

    def supernet(self) -> OFAMobileNetV3:
        """The trained supernet: loaded from :attr:`checkpoint`, or trained (and saved there) when missing."""
        with self._lock:
            if self._net is None:
                self._net = load_or_train_supernet(self.arch, self.checkpoint, self.train_if_missing, self.data, self.training, self.seed, self.progress, self.calibration_size, self.name)
            return self._net

    def calibration(self) -> torch.Tensor:
        """The fixed training images batch norm is recalibrated on (at the largest resolution)."""
        with self._lock:
            if self._calib is None:
                self._calib = calibration_images(self.data().train, self.calibration_size, self.seed)
            return self._calib

    def prepare(self, config: Mapping[str, Any], net: Optional[OFAMobileNetV3] = None) -> OFAMobileNetV3:
        """Select ``config`` in the supernet (default: :meth:`supernet`) and recalibrate its batch norm.
        Call it holding the evaluator's lock when the supernet is shared."""
        net = net if net is not None else self.supernet()
        cfg = net.set_active_subnet(config)
        recalibrate_batchnorm(net, self.calibration(), cfg["resolution"])
        net.eval()
        return net

    def _supernet_of(self, trial: Trial) -> OFAMobileNetV3:
        """The trained supernet a trial was evaluated with, found through its artifacts."""
        path = (trial.artifacts or {}).get(SUPERNET_ARTIFACT)
        if not path:
            raise ValueError(
                f"trial {trial.number} ({trial.status}) lists no {SUPERNET_ARTIFACT!r} artifact (it has {sorted(trial.artifacts)}): "
                f"it was not evaluated by {self.name}, so there are no trained weights to build it with"
            )
        if Path(path).resolve() == self.checkpoint.resolve():
            return self.supernet()
        return load_supernet(path, expect_arch=self.arch)

    def _test_data(self, resolution: int) -> Any:
        val = self.data().val
        xs, ys = zip(*(val[i] for i in range(len(val))))
        return resize_batch(torch.stack(list(xs)), resolution), torch.as_tensor([int(y) for y in ys])

    # -- hooks -----------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["accuracy"]

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        # training (if needed) happens here, once, before any worker starts
        return self.supernet().space()

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        res = candidate.config["resolution"]
        with self._lock:
            net = self.prepare(candidate.config)
            if not self.finetune_epochs:
                acc = evaluate_accuracy(net, self.data().val, res, self.eval_batch_size)
            else:
                sub = copy.deepcopy(net.get_active_subnet())
        info = {"resolution": res, "calibration_images": int(len(self.calibration())), "val_images": len(self.data().val)}
        artifacts = {SUPERNET_ARTIFACT: str(self.checkpoint)}
        if self.finetune_epochs:
            acc, path = self._finetune(sub, candidate, ctx)
            artifacts[FINETUNED_ARTIFACT] = str(path)
            info["finetune_epochs"] = self.finetune_epochs
        return EvalResult({"accuracy": acc}, artifacts=artifacts, info=info)

    def _finetune(self, sub: Any, candidate: Candidate, ctx: RunContext) -> Any:
        """Fine-tune an extracted sub-network, reporting validation accuracy per epoch."""
        from hwaml import TrialPruned

        from .progressive_shrinking import train_static

        res = int(candidate.config["resolution"])
        data = self.data()

        def report(epoch: int, model: Any) -> None:
            acc = evaluate_accuracy(model, data.val, res, self.eval_batch_size)
            ctx.report(epoch, acc)
            if ctx.should_prune():
                raise TrialPruned(f"fine-tuning epoch {epoch}: validation accuracy {acc:.4f}")

        seed = int(ctx.seed) * 1000 + int(candidate.number or 0)
        train_static(sub, data, self.finetune_epochs, self.finetune_lr, res, batch_size=self.training.batch_size, seed=seed, on_epoch=report)
        acc = evaluate_accuracy(sub, data.val, res, self.eval_batch_size)
        out = Path(ctx.run_dir) / "ofa_finetuned"
        out.mkdir(parents=True, exist_ok=True)
        stem = f"trial_{candidate.number}" if candidate.number is not None else "config_" + hashlib.sha1(json.dumps(candidate.config, sort_keys=True).encode()).hexdigest()[:12]
        path = out / f"{stem}.pt"
        torch.save({k: v.detach().clone() for k, v in sub.state_dict().items()}, path)
        (out / f"{stem}.json").write_text(json.dumps({"config": dict(candidate.config), "val_accuracy": acc, "epochs": self.finetune_epochs, "lr": self.finetune_lr}, indent=1))
        return acc, path

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        """The candidate as a network.

        ``trial is None`` (costing): the static sub-network built from the
        configuration alone, untrained, weights drawn from a fixed seed (no
        supernet, no data: shapes are what costs depend on). A finished trial:
        the sub-network extracted from the trial's trained supernet with batch
        norm recalibrated, with calibration images at its resolution and the
        validation split as ``test_data``.
        """
        from .predictors import count_macs

        config = self._space.validate(candidate.config)
        res = int(config["resolution"])
        shape = (self.arch.in_channels, res, res)
        macs = float(count_macs(self.arch, config))
        info = {"config": config}
        if trial is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the same weights for the same candidate, the global RNG untouched
                module = build_subnet(self.arch, config).eval()
            return BuiltModel(module, shape, trained=False, macs=macs, source=self.name, info=info)
        tuned = (trial.artifacts or {}).get(FINETUNED_ARTIFACT)
        if tuned:
            # the trial fine-tuned its sub-network: those weights, not the supernet's
            sub = build_subnet(self.arch, config)
            sub.load_state_dict(torch.load(tuned, weights_only=True))
            sub.eval()
        else:
            net = self._supernet_of(trial)
            with self._lock:
                self.prepare(config, net)
                sub = net.get_active_subnet().eval()
        calib = resize_batch(self.calibration(), res)
        return BuiltModel(
            sub,
            shape,
            trained=True,
            calibration=calib,
            test_data=self._test_data(res),
            macs=macs,
            source=self.name,
            info={**info, "trial": trial.number, SUPERNET_ARTIFACT: str(trial.artifacts.get(SUPERNET_ARTIFACT))},
        )

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> DeployResult:
        from .export import export_onnx, save_subnet
        from .predictors import count_params

        if SUPERNET_ARTIFACT not in trial.artifacts:
            return DeployResult(
                {},
                ok=False,
                message=f"trial {trial.number} ({trial.status}) has no trained supernet among its artifacts: {self.name} did not evaluate it",
                source=self.name,
            )
        model = self.build_model(trial.candidate, trial, ctx)
        sub: MobileNetV3Subnet = model.module
        x, y = model.test_data
        correct = 0
        with torch.no_grad():
            for start in range(0, len(y), self.eval_batch_size):
                correct += int((sub(x[start : start + self.eval_batch_size]).argmax(1) == y[start : start + self.eval_batch_size]).sum())
        acc = correct / max(1, len(y))
        out = Path(ctx.run_dir) / "deploy"
        stem = out / f"ofa_subnet_trial{trial.number}"
        files = save_subnet(sub, stem, {"accuracy": acc, "dataset": self.dataset, "trial": trial.number})
        onnx = export_onnx(sub, stem.with_suffix(".onnx"))
        files["onnx"] = onnx["path"]
        metrics = {
            "accuracy": acc,
            "onnx_max_abs_diff": onnx["max_abs_diff"],
            "macs_m": float(model.macs) / 1e6,
            "params_m": count_params(self.arch, sub.config) / 1e6,
        }
        return DeployResult(files, ok=True, metrics=metrics, message=f"wrote {stem.name}.pt/.json/.onnx", source=self.name)
