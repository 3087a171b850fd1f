"""``tinyengine_digits``: train an MCUNet-like net on digits, quantise it to int8.

For each candidate of :func:`hwaml_tinyengine.models.mcunet_space` the evaluator
trains the network on scikit-learn's 8x8 digits upsampled to the candidate's
resolution, quantises it post-training (per-channel weights, calibration on
training images) and reports the float and int8 (Python reference) test
accuracies. ``accuracy`` is the int8 one: it is what the MCU runs.

It is an NN evaluator: ``build_model`` gives the candidate's network to the
run's NN backends (untrained while costing; with the trial's trained weights,
calibration images and test split when deploying). With ``save_checkpoints``
each trial writes a checkpoint (:mod:`hwaml_tinyengine.checkpoint`: tensors in
``trial_<n>.pt``, metadata in ``trial_<n>.json``) and lists both in its
``EvalResult.artifacts``; that is how deploy finds the trained weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from hwaml import BuiltModel, Candidate, EvalResult, RunContext, SearchSpace, Trial, TrialPruned, hookimpl

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import accuracy, digits_split, train_classifier
from .ir import import_model
from .models import count_macs, mcunet_from_config, mcunet_space
from .quantize import predict_int8, quantize_graph

__all__ = ["TinyEngineDigits", "CHECKPOINT_DIR", "METRICS"]

log = logging.getLogger(__name__)

#: where checkpoints go, under the run directory
CHECKPOINT_DIR = "tinyengine"
#: what ``evaluate`` reports
METRICS = ("accuracy", "int8_accuracy", "float_accuracy", "params_k")
NUM_CLASSES = 10
IN_CHANNELS = 1
SOURCE = "tinyengine_digits"


class TinyEngineDigits:
    """Evaluator: digits accuracy of the float and the int8 network.

    :param epochs, lr, batch_size: training (Adam, one-cycle schedule).
    :param calib_samples: training images used for int8 calibration (and
        saved with the checkpoint for deploy).
    :param resolutions, widths, kernels, expands, depths: the search space
        (:func:`~hwaml_tinyengine.models.mcunet_space`; ``None``: its default).
    :param save_checkpoints: write each trial's checkpoint (deploy needs it).
    :param threads: torch threads for training (``None``: what the executor set).
    :param seed: the train/test split.
    """

    def __init__(
        self,
        epochs: int = 15,
        lr: float = 0.01,
        batch_size: int = 64,
        calib_samples: int = 256,
        resolutions: Optional[List[int]] = None,
        widths: Optional[List[float]] = None,
        kernels: Optional[List[int]] = None,
        expands: Optional[List[int]] = None,
        depths: Optional[List[int]] = None,
        save_checkpoints: bool = True,
        threads: Optional[int] = 1,
        seed: int = 0,
    ):
        if epochs < 1 or batch_size < 1 or calib_samples < 1:
            raise ValueError("epochs, batch_size and calib_samples must be >= 1")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {threads}")
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.calib_samples = calib_samples
        self.space_kwargs: Dict[str, Any] = {
            k: v
            for k, v in dict(resolutions=resolutions, widths=widths, kernels=kernels, expands=expands, depths=depths).items()
            if v is not None
        }
        self.save_checkpoints = save_checkpoints
        self.threads = threads
        self.seed = seed
        self.default_objectives = {"accuracy": "max"}

    # -- hooks: space and metrics ---------------------------------------------
    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        return mcunet_space(**self.space_kwargs)

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        return list(METRICS)

    # -- the network of a candidate -------------------------------------------
    def network(self, config: Dict[str, Any]) -> torch.nn.Module:
        """The untrained network of a configuration (deterministic weights)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return mcunet_from_config(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)

    @hookimpl
    def build_model(self, candidate: Candidate, trial: Optional[Trial], ctx: RunContext) -> BuiltModel:
        """The candidate's network: untrained while costing (``trial`` is None);
        with the trial's trained weights, calibration images and test split
        when ``trial`` is given and its artifacts list a checkpoint.

        A trial whose artifacts list no checkpoint (``save_checkpoints=false``)
        gives the untrained network with ``trained=False`` and the reason in
        ``info["untrained_reason"]``. A listed checkpoint that is missing,
        unreadable, not plain tensors (a crafted pickle is refused, never run)
        or of another configuration raises naming the trial.
        """
        config = dict(candidate.config)
        model = self.network(config).eval()
        shape = tuple(int(s) for s in model.input_shape)
        macs = float(count_macs(model, shape))
        info: Dict[str, Any] = {"config": config, "num_classes": NUM_CLASSES}
        if trial is None:
            return BuiltModel(model, shape, trained=False, macs=macs, source=SOURCE, info=info)
        artifacts = trial.artifacts
        if "checkpoint" not in artifacts:
            why = f"trial {trial.number} lists no checkpoint in its artifacts ({sorted(artifacts) or 'none'}; evaluate with save_checkpoints=true)"
            return BuiltModel(model, shape, trained=False, macs=macs, source=SOURCE, info={**info, "untrained_reason": why})
        try:
            tensors, meta = load_checkpoint(artifacts["checkpoint"], artifacts.get("checkpoint_meta"))
        except CheckpointError as exc:
            raise CheckpointError(f"{SOURCE}: trial {trial.number}: {exc}") from exc
        if json.dumps(meta.get("config"), sort_keys=True) != json.dumps(config, sort_keys=True):
            raise CheckpointError(f"{SOURCE}: trial {trial.number}: checkpoint {artifacts['checkpoint']} is of config {meta.get('config')}, not the trial's {config}")
        try:
            model.load_state_dict(tensors["state_dict"])
        except RuntimeError as exc:  # shapes or keys of another network
            raise CheckpointError(f"{SOURCE}: trial {trial.number}: checkpoint {artifacts['checkpoint']} does not fit the network: {exc}") from exc
        model.eval()
        info.update(checkpoint=str(artifacts["checkpoint"]), float_accuracy=meta.get("float_accuracy"), int8_accuracy=meta.get("int8_accuracy"))
        return BuiltModel(
            model,
            shape,
            trained=True,
            calibration=tensors["calib"],
            test_data=(tensors["x_test"], tensors["y_test"]),
            macs=macs,
            source=SOURCE,
            info=info,
        )

    # -- training ---------------------------------------------------------------
    def train_and_quantize(self, config: Dict[str, Any], seed: int, ctx: Optional[RunContext] = None) -> Dict[str, Any]:
        """Train, quantise and score one configuration (also used by tests)."""
        threads = self.threads or (ctx.threads if ctx is not None else None)
        if threads:
            torch.set_num_threads(int(threads))
        xtr, ytr, xte, yte = digits_split(int(config["resolution"]), seed=self.seed)
        torch.manual_seed(seed)
        model = mcunet_from_config(config, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
        on_epoch = None
        if ctx is not None:

            def on_epoch(epoch: int, m: Any) -> None:
                # the float model's accuracy per epoch: what a pruner watches (the objective is the int8 model's)
                acc = accuracy(m, xte, yte)
                ctx.report(epoch, acc)
                if ctx.should_prune():
                    raise TrialPruned(f"epoch {epoch}: float accuracy {acc:.4f}")

        train_classifier(model, xtr, ytr, self.epochs, self.lr, self.batch_size, seed, on_epoch=on_epoch)
        float_acc = accuracy(model, xte, yte)
        calib = xtr[: self.calib_samples]
        qg = quantize_graph(import_model(model, model.input_shape), calib)
        int8_acc = float((predict_int8(qg, xte) == yte.numpy()).mean())
        return {"model": model, "qgraph": qg, "calib": calib, "x_test": xte, "y_test": yte, "float_accuracy": float_acc, "int8_accuracy": int8_acc}

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        seed = int(ctx.seed) * 1000 + int(candidate.number or 0)
        out = self.train_and_quantize(dict(candidate.config), seed, ctx)
        artifacts: Dict[str, str] = {}
        if self.save_checkpoints:
            path = Path(ctx.run_dir) / CHECKPOINT_DIR / f"trial_{candidate.number}.pt"
            pt, meta = save_checkpoint(
                path,
                {"state_dict": out["model"].state_dict(), "calib": out["calib"], "x_test": out["x_test"], "y_test": out["y_test"]},
                {
                    "config": dict(candidate.config),
                    "float_accuracy": out["float_accuracy"],
                    "int8_accuracy": out["int8_accuracy"],
                    "num_classes": NUM_CLASSES,
                    "in_channels": IN_CHANNELS,
                },
            )
            artifacts = {"checkpoint": str(pt), "checkpoint_meta": str(meta)}
        n_params = sum(p.numel() for p in out["model"].parameters())
        metrics = {
            "accuracy": out["int8_accuracy"],
            "int8_accuracy": out["int8_accuracy"],
            "float_accuracy": out["float_accuracy"],
            "params_k": n_params / 1000.0,
        }
        log.info("trial %s: float %.4f int8 %.4f", candidate.number, out["float_accuracy"], out["int8_accuracy"])
        return EvalResult(metrics, artifacts=artifacts)
