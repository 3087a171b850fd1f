"""``tinyengine_digits``: train an MCUNet-like net on digits, quantise it to int8.

For each candidate of :func:`hwaml_tinyengine.models.mcunet_space` the evaluator
trains the network on scikit-learn's 8x8 digits upsampled to the candidate's
resolution, quantises it post-training (per-channel weights, calibration on
training images) and reports the float and int8 (Python reference) test
accuracies. ``accuracy`` is the int8 one: it is what the MCU runs.

It saves ``<run_dir>/tinyengine/trial_<n>.pt`` (config, weights, calibration
images and the test split) so that the TinyEngine backend's ``deploy`` can
compile the trained network and check the C code's accuracy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from hwaml import Candidate, EvalResult, RunContext, SearchSpace, hookimpl

from .data import accuracy, digits_split, train_classifier
from .ir import import_model
from .models import mcunet_from_config, mcunet_space
from .quantize import predict_int8, quantize_graph

__all__ = ["TinyEngineDigits", "CHECKPOINT_DIR"]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "tinyengine"


class TinyEngineDigits:
    """Evaluator: digits accuracy of the float and the int8 network."""

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
        threads: int = 1,
        seed: int = 0,
    ):
        if epochs < 1 or batch_size < 1 or calib_samples < 1:
            raise ValueError("epochs, batch_size and calib_samples must be >= 1")
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

    @hookimpl
    def search_space(self, ctx: RunContext) -> SearchSpace:
        space = mcunet_space(**self.space_kwargs)
        space.meta["model_factory"] = "hwaml_tinyengine.models.mcunet_from_config"
        return space

    def train_and_quantize(self, config: Dict[str, Any], seed: int) -> Dict[str, Any]:
        """Train, quantise and score one configuration (also used by tests)."""
        if self.threads:
            torch.set_num_threads(self.threads)
        xtr, ytr, xte, yte = digits_split(int(config["resolution"]), seed=self.seed)
        torch.manual_seed(seed)
        model = mcunet_from_config(config, num_classes=10, in_channels=1)
        train_classifier(model, xtr, ytr, self.epochs, self.lr, self.batch_size, seed)
        float_acc = accuracy(model, xte, yte)
        calib = xtr[: self.calib_samples]
        qg = quantize_graph(import_model(model, model.input_shape), calib)
        int8_acc = float((predict_int8(qg, xte) == yte.numpy()).mean())
        return {"model": model, "qgraph": qg, "calib": calib, "x_test": xte, "y_test": yte, "float_accuracy": float_acc, "int8_accuracy": int8_acc}

    @hookimpl
    def evaluate(self, candidate: Candidate, ctx: RunContext) -> EvalResult:
        seed = int(ctx.seed) * 1000 + int(candidate.number or 0)
        out = self.train_and_quantize(dict(candidate.config), seed)
        artifacts: Dict[str, str] = {}
        if self.save_checkpoints and ctx.run_dir is not None:
            path = Path(ctx.run_dir) / CHECKPOINT_DIR / f"trial_{candidate.number}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(
                {
                    "config": dict(candidate.config),
                    "state_dict": out["model"].state_dict(),
                    "calib": out["calib"],
                    "x_test": out["x_test"],
                    "y_test": out["y_test"],
                    "float_accuracy": out["float_accuracy"],
                },
                path,
            )
            artifacts["checkpoint"] = str(path)
        n_params = sum(p.numel() for p in out["model"].parameters())
        metrics = {
            "accuracy": out["int8_accuracy"],
            "int8_accuracy": out["int8_accuracy"],
            "float_accuracy": out["float_accuracy"],
            "params_k": n_params / 1000.0,
        }
        log.info("trial %s: float %.4f int8 %.4f", candidate.number, out["float_accuracy"], out["int8_accuracy"])
        return EvalResult(metrics, artifacts=artifacts)
