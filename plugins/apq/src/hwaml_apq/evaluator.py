"""``evaluator=apq_fashion`` / ``apq_digits``: accuracy of joint configurations
(architecture, pruning, bits) as sub-networks of a trained once-for-all supernet.

The steps read as APQ's pipeline:

1. the supernet is trained once by ofa-nas's progressive shrinking (or loaded
   from its cache) when the run asks for the space;
2. a candidate is copied out of it (:func:`hwaml_apq.network.extract_subnet`)
   and its batch norm recalibrated on training images;
3. ``mode: fp32``: its full-precision accuracy (the cheap samples of the
   full-precision predictor: no training); ``mode: quant``: it is quantized
   to its bits, its ranges calibrated, it is fine-tuned quantization-aware
   for ``qat.epochs`` (validation accuracy reported after every epoch through
   ``ctx.report``, stopped when ``ctx.should_prune()``), and its quantized
   accuracy measured.

Runs of this evaluator are the predictor's data collection: every sample is a
trial in the run store with its configuration, resumable (``resume=true``)
and parallel through the executor.

``build_model`` gives the quantized network (untrained while costing; the
trial's fine-tuned weights, found through its artifacts, when deploying);
``deploy`` writes the per-layer bit report, the state dict and an ONNX file
with the fake-quantization ops.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from hwaml import BuiltModel, Candidate, DeployResult, EvalResult, RunContext, SearchSpace, Trial, TrialPruned, hookimpl
from hwaml.config import as_config
from hwaml_ofa_nas.data import DataSplits, resize_batch
from hwaml_ofa_nas.evaluator import TrainingConfig, default_checkpoint_path, load_or_train_supernet
from hwaml_ofa_nas.progressive_shrinking import calibration_images, evaluate_accuracy, recalibrate_batchnorm
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config

from .data import DATASETS, MIN_FASHION_VAL_IMAGES, idx_root, load_data, load_idx_test
from .network import bit_report, build_untrained, extract_subnet, quantize_subnet, reconstruct_projections
from .quantize import calibrate, finetune
from .space import JointSpaceConfig, joint_space, widest_config

log = logging.getLogger("hwaml.apq")

__all__ = ["APQEvaluator", "QATConfig", "DataConfig", "SUPERNET_ARTIFACT", "QUANTIZED_ARTIFACT"]

SUPERNET_ARTIFACT = "supernet"
QUANTIZED_ARTIFACT = "quantized"
MODES = ("quant", "fp32")


@dataclass(frozen=True)
class QATConfig:
    """Range calibration and quantization-aware fine-tuning (``qat:``).

    :param epochs: fine-tuning epochs per candidate (0: calibration only).
    :param lr: SGD learning rate (cosine schedule).
    :param batch_size: images per step.
    :param max_steps_per_epoch: cap on steps per epoch (``None``: the whole training split).
    :param calibration_images: training images the clipping ranges are calibrated on.
    :param kl_bins: histogram bins of the KL calibration.
    :param save_weights: keep each trial's fine-tuned weights (listed in its artifacts) for deploy.
    """

    epochs: int = 1
    lr: float = 0.005
    batch_size: int = 64
    max_steps_per_epoch: Optional[int] = None
    calibration_images: int = 256
    kl_bins: int = 512
    save_weights: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.lr <= 0 or self.batch_size < 1 or self.calibration_images < 1 or self.kl_bins < 16:
            raise ValueError(f"qat: bad settings (epochs >= 0, lr > 0, batch_size >= 1, calibration_images >= 1, kl_bins >= 16): {self}")


@dataclass(frozen=True)
class DataConfig:
    """Which images (``data:``).

    :param dataset: ``fashion_mnist`` (default; Debian's IDX files), ``idx`` (any MNIST-like folder) or ``digits``.
    :param root: IDX folder (default for fashion_mnist: /usr/share/datasets/fashion-mnist).
    :param val_images: IDX sets: training images held out (stratified, seeded) as the
        validation split every search decision is made on; at least 5,000 for
        Fashion-MNIST (:data:`hwaml_apq.data.MIN_FASHION_VAL_IMAGES`).
    :param train_limit: train on a seeded random subset of the remaining training images (CPU-sized runs).
    :param test_limit: IDX sets: the final report scores the first this many test
        (``t10k``) images (``None``: all 10,000); the test split is never searched on.
    :param val_limit: digits only: keep the first this many validation images.
    :param val_fraction: held-out fraction for digits (which has no split).
    """

    dataset: str = "fashion_mnist"
    root: Optional[str] = None
    val_images: int = 5000
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    val_limit: Optional[int] = None
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"data.dataset: {self.dataset!r} is not one of {DATASETS}")
        if self.dataset != "digits" and self.val_limit is not None:
            raise ValueError(f"data.val_limit is for digits; {self.dataset} validates on data.val_images held-out training images (now {self.val_images})")
        if self.dataset == "fashion_mnist" and self.val_images < MIN_FASHION_VAL_IMAGES:
            raise ValueError(
                f"data.val_images={self.val_images}: Fashion-MNIST validates on at least {MIN_FASHION_VAL_IMAGES} held-out training images "
                f"(fewer cannot separate the searches' accuracies); use dataset=idx for a smaller IDX folder"
            )


class APQEvaluator:
    """Evaluate joint configurations as (quantized) sub-networks of a trained OFA supernet.

    :param arch: supernet preset of ofa-nas (``tiny_digits``, ``test_tiny``, ``mobilenetv3_large``) or a dict.
    :param arch_overrides: keys of :class:`hwaml_ofa_nas.SupernetConfig` to change.
    :param data: a :class:`DataConfig` or mapping.
    :param space: a :class:`hwaml_apq.space.JointSpaceConfig` or mapping (shrink the space here).
    :param mode: ``quant`` (quantized accuracy after fine-tuning) or ``fp32`` (full-precision samples).
    :param qat: a :class:`QATConfig` or mapping.
    :param checkpoint: supernet checkpoint; default: ofa-nas's cache file for these settings.
    :param train_if_missing: train the supernet with progressive shrinking when the checkpoint is missing.
    :param training: ofa-nas's :class:`~hwaml_ofa_nas.evaluator.TrainingConfig` (progressive shrinking).
    :param calibration_size: training images batch norm is recalibrated on.
    :param eval_batch_size: images per batch when measuring accuracy.
    :param reconstruct: AMC's least-squares reconstruction: each block whose middle width is
        pruned gets its point-wise projection refit so that its output matches the unpruned
        block's on ``reconstruct_images`` calibration images (:func:`hwaml_apq.network.reconstruct_projections`).
    :param reconstruct_images: calibration images the reconstruction fits on.
    """

    default_objectives = {"accuracy": "max"}

    def __init__(
        self,
        arch: Any = "tiny_digits",
        arch_overrides: Optional[Dict[str, Any]] = None,
        data: Union[DataConfig, Mapping[str, Any], None] = None,
        space: Union[JointSpaceConfig, Mapping[str, Any], None] = None,
        mode: str = "quant",
        qat: Union[QATConfig, Mapping[str, Any], None] = None,
        checkpoint: Optional[str] = None,
        train_if_missing: bool = True,
        training: Union[TrainingConfig, Mapping[str, Any], None] = None,
        calibration_size: int = 500,
        eval_batch_size: int = 256,
        reconstruct: bool = False,
        reconstruct_images: int = 256,
        seed: int = 0,
        progress: bool = True,
        name: str = "apq",
    ):
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {MODES}")
        self.arch = supernet_config(arch, arch_overrides)
        self.data_cfg = as_config(DataConfig, data, "data")
        self.space_cfg = as_config(JointSpaceConfig, space, "space")
        self.mode = mode
        self.qat = as_config(QATConfig, qat, "qat")
        self.training = as_config(TrainingConfig, training, "training")
        self.train_if_missing = train_if_missing
        self.calibration_size = calibration_size
        self.eval_batch_size = eval_batch_size
        if int(reconstruct_images) < 1:
            raise ValueError(f"reconstruct_images: must be >= 1, got {reconstruct_images}")
        self.reconstruct = bool(reconstruct)
        self.reconstruct_images = int(reconstruct_images)
        self.seed = seed
        self.progress = progress
        self.name = name
        t = self.training
        d = self.data_cfg
        # digits with ofa-nas's default settings shares ofa-nas's cached supernet
        settings = {
            "epochs": t.resolved_epochs(),
            "lrs": t.resolved_lrs(),
            "batch_size": t.batch_size,
            "subnets_per_step": t.subnets_per_step,
            "kd_ratio": t.kd_ratio,
            "seed": seed,
            "data_root": d.root,
            "val_fraction": d.val_fraction,
        }
        if d.dataset != "digits":
            # the held-out validation images are not trained on: they name the cache file
            settings.update(train_limit=d.train_limit, val_images=d.val_images, split="train_holdout")
        self.checkpoint = Path(checkpoint) if checkpoint else default_checkpoint_path(self.arch, d.dataset, settings)
        self._space = joint_space(self.arch, self.space_cfg)  # cheap: no weights
        self.resolution = int(self._space.meta["apq"]["resolution"])
        self._net: Optional[OFAMobileNetV3] = None
        self._data: Optional[DataSplits] = None
        self._calib: Optional[torch.Tensor] = None
        self._test: Any = None
        self._lock = threading.RLock()

    # -- lazily built state ---------------------------------------------------
    def data(self) -> DataSplits:
        with self._lock:
            if self._data is None:
                d = self.data_cfg
                data = load_data(d.dataset, d.root, max(self.arch.resolutions), self.arch.in_channels, d.val_fraction, d.train_limit, d.val_limit, self.seed, d.val_images)
                if data.n_classes != self.arch.n_classes:
                    raise ValueError(f"dataset {d.dataset!r} has {data.n_classes} classes but the supernet has n_classes={self.arch.n_classes}; set arch_overrides.n_classes")
                self._data = data
            return self._data

    def test_split(self) -> Any:
        """The test split (IDX sets' ``t10k`` files, the first ``data.test_limit``), for
        the final report only (:meth:`test_accuracy`, deploy); ``None`` for digits,
        which has none."""
        with self._lock:
            d = self.data_cfg
            root = idx_root(d.dataset, d.root)
            if root is None:
                return None
            if self._test is None:
                self._test = load_idx_test(root, max(self.arch.resolutions), self.arch.in_channels, d.test_limit)
            return self._test

    def test_accuracy(self, trial: Trial, ctx: RunContext) -> float:
        """Final report: the finished ``trial``'s network (its fine-tuned weights)
        scored on the test split; raises for digits (no test split)."""
        test = self.test_split()
        if test is None:
            raise ValueError(f"{self.name}: dataset {self.data_cfg.dataset!r} has no test split (digits holds out only a validation split)")
        model = self.build_model(trial.candidate, trial, ctx)
        return evaluate_accuracy(model.module, test, self.resolution, self.eval_batch_size)

    def supernet(self) -> OFAMobileNetV3:
        """The trained supernet: loaded from :attr:`checkpoint` or trained (and cached) when missing."""
        with self._lock:
            if self._net is None:
                self._net = load_or_train_supernet(self.arch, self.checkpoint, self.train_if_missing, self.data, self.training, self.seed, self.progress, self.calibration_size, self.name)
            return self._net

    def calibration(self) -> torch.Tensor:
        with self._lock:
            if self._calib is None:
                self._calib = resize_batch(calibration_images(self.data().train, self.calibration_size, self.seed), self.resolution)
            return self._calib

    def subnet(self, config: Mapping[str, Any]):
        """The full-precision sub-network of ``config``, batch norm recalibrated
        (and, with ``reconstruct``, its pruned blocks' projections refit to the
        unpruned network's outputs; the per-block errors in ``sub.reconstruction``)."""
        with self._lock:
            sub = extract_subnet(self.supernet(), config, self.resolution)
        recalibrate_batchnorm(sub, self.calibration())
        sub.reconstruction = []
        if self.reconstruct:
            wide = widest_config(self._space, config)
            if wide != config:
                with self._lock:
                    ref = extract_subnet(self.supernet(), wide, self.resolution)
                recalibrate_batchnorm(ref, self.calibration())
                sub.reconstruction = reconstruct_projections(sub, ref, self.calibration()[: self.reconstruct_images], seed=self.seed)
                recalibrate_batchnorm(sub, self.calibration())  # the refit projections change their batch norm's input
        return sub.eval()

    def _loader(self):
        g = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(self.data().train, batch_size=self.qat.batch_size, shuffle=True, generator=g, drop_last=True)

    def quantized(self, config: Mapping[str, Any], ctx: Optional[RunContext] = None, fp_sub: Any = None):
        """The quantized, calibrated and fine-tuned network of ``config``; ``ctx``
        (when given) receives the validation accuracy after every epoch and may prune."""
        sub = fp_sub if fp_sub is not None else self.subnet(config)
        q = quantize_subnet(sub, self.arch, inplace=True)  # sub is a fresh copy out of the supernet
        calibrate(q, self.calibration()[: self.qat.calibration_images], self.qat.kl_bins)
        val = self.data().val

        def on_epoch(epoch: int) -> None:
            if ctx is None:
                return
            acc = evaluate_accuracy(q, val, self.resolution, self.eval_batch_size)
            ctx.report(epoch, acc)
            if ctx.should_prune():
                raise TrialPruned(f"epoch {epoch}: quantized val accuracy {acc:.4f}")

        if self.qat.epochs > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                finetune(q, self._loader(), self.qat.epochs, self.qat.lr, on_epoch, max_steps_per_epoch=self.qat.max_steps_per_epoch)
        return q.eval()

    # -- hooks -------------------------------------------------------------------
    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return ["accuracy", "accuracy_fp32"]

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        self.supernet()  # trained (if needed) once, before any worker starts
        return self._space

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        config = self._space.validate(candidate.config)
        val = self.data().val
        sub = self.subnet(config)
        acc_fp = evaluate_accuracy(sub, val, self.resolution, self.eval_batch_size)
        artifacts = {SUPERNET_ARTIFACT: str(self.checkpoint)}
        info: Dict[str, Any] = {"mode": self.mode, "val_images": len(val)}
        if sub.reconstruction:
            info["reconstruction"] = sub.reconstruction
        if self.mode == "fp32":
            return EvalResult({"accuracy": acc_fp, "accuracy_fp32": acc_fp}, artifacts=artifacts, info=info)
        q = self.quantized(config, ctx, fp_sub=sub)
        acc_q = evaluate_accuracy(q, val, self.resolution, self.eval_batch_size)
        if self.qat.save_weights and candidate.number is not None:
            path = Path(ctx.run_dir) / "apq_weights" / f"trial{candidate.number}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.detach().clone() for k, v in q.state_dict().items()}, path)
            artifacts[QUANTIZED_ARTIFACT] = str(path)
        info["qat"] = {"epochs": self.qat.epochs, "lr": self.qat.lr}
        return EvalResult({"accuracy": acc_q, "accuracy_fp32": acc_fp}, artifacts=artifacts, info=info)

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        """The candidate as a network: quantized to its bits (``mode: quant``) or
        full precision (``fp32``). Costing (``trial is None``): untrained weights
        from a fixed seed, no supernet. A finished trial: its fine-tuned weights
        (artifact ``quantized``), or, without them, the network rebuilt from the
        trial's supernet (recalibrated, re-fine-tuned with the same seed)."""
        config = self._space.validate(candidate.config)
        shape = (self.arch.in_channels, self.resolution, self.resolution)
        info = {"config": config}
        if trial is None:
            net = build_untrained(self.arch, config, self.resolution)
            if self.mode == "quant":
                net = quantize_subnet(net, self.arch, inplace=True)
            return BuiltModel(net, shape, trained=False, source=self.name, info=info)
        arts = trial.artifacts or {}
        if SUPERNET_ARTIFACT not in arts:
            raise ValueError(f"trial {trial.number} ({trial.status}) lists no {SUPERNET_ARTIFACT!r} artifact (it has {sorted(arts)}): {self.name} did not evaluate it")
        if self.mode == "quant" and QUANTIZED_ARTIFACT in arts:
            net = quantize_subnet(build_untrained(self.arch, config, self.resolution), self.arch, inplace=True)
            net.load_state_dict(torch.load(arts[QUANTIZED_ARTIFACT], map_location="cpu", weights_only=True))
        elif self.mode == "quant":
            net = self.quantized(config)
        else:
            net = self.subnet(config)
        split = self.test_split()
        split = self.data().val if split is None else split  # digits: no test split
        xs, ys = zip(*(split[i] for i in range(len(split))))
        test = (resize_batch(torch.stack(list(xs)), self.resolution), torch.as_tensor([int(y) for y in ys]))
        return BuiltModel(net.eval(), shape, trained=True, calibration=self.calibration(), test_data=test, source=self.name, info={**info, "trial": trial.number})

    @hookimpl
    def deploy(self, trial: Trial, ctx: RunContext) -> Optional[DeployResult]:
        if SUPERNET_ARTIFACT not in (trial.artifacts or {}):
            return DeployResult({}, ok=False, message=f"trial {trial.number} has no supernet among its artifacts: {self.name} did not evaluate it", source=self.name)
        model = self.build_model(trial.candidate, trial, ctx)
        x, y = model.test_data
        with torch.no_grad():
            correct = sum(int((model.module(x[s : s + 256]).argmax(1) == y[s : s + 256]).sum()) for s in range(0, len(y), 256))
        acc = correct / max(1, len(y))
        split = "validation" if self.test_split() is None else "test"
        out = Path(ctx.run_dir) / "deploy"
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"apq_trial{trial.number}"
        report = {"trial": trial.number, "accuracy": acc, "accuracy_split": split, "images": len(y), "mode": self.mode, "resolution": self.resolution, "blocks": bit_report(self.arch, trial.config, self.resolution), "config": trial.config}
        Path(f"{stem}.bits.json").write_text(json.dumps(report, indent=2))
        torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()}, f"{stem}.pt")
        files = {"bits": f"{stem}.bits.json", "weights": f"{stem}.pt"}
        metrics = {"accuracy": acc, f"{split}_accuracy": acc}
        try:
            torch.onnx.export(model.module, torch.zeros(1, *model.input_shape), f"{stem}.onnx", dynamo=False, opset_version=17)
            files["onnx"] = f"{stem}.onnx"
        except (RuntimeError, ImportError, ModuleNotFoundError) as exc:  # the bit report and weights stand on their own
            return DeployResult(files, ok=True, metrics=metrics, message=f"wrote bit report and weights; ONNX export failed: {exc}", source=self.name)
        return DeployResult(files, ok=True, metrics=metrics, message=f"wrote {stem.name}.bits.json/.pt/.onnx", source=self.name)
