"""Shared settings of the TinyTL benchmarks (small scale, CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from hwaml import Candidate
from hwaml.testing import make_context
from hwaml_tinytl.evaluator import TinyTLEvaluator
from hwaml_tinytl.measure import measure_training_step
from hwaml_tinytl.memory import profile_training_memory
from hwaml_tinytl.quantize import quantize_frozen_weights

TARGETS = ("fashion_5_9", "digits", "letters")


def evaluator(target: str, method: str, args: Any, data_seed: int, lr: float) -> TinyTLEvaluator:
    return TinyTLEvaluator(
        target=target,
        method=method,
        arch="proxyless_tiny",
        data={"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test, "seed": data_seed},
        training={"epochs": args.epochs, "lr": lr},
        pretrain=pretrain_settings(args),
        progress=False,
    )


def add_pretrain_args(ap: Any) -> None:
    """The pretrained network's settings (the cache file is named after them; made once)."""
    ap.add_argument("--pretrain-n-train", type=int, default=None, help="source images per class (default: PretrainConfig's)")
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--no-lite-pretrain", action="store_true", help="pretrain the backbone without lite residuals (fresh ones at transfer)")


def pretrain_settings(args: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if getattr(args, "pretrain_n_train", None) is not None:
        out["n_train"] = args.pretrain_n_train
    if getattr(args, "pretrain_epochs", None) is not None:
        out["epochs"] = args.pretrain_epochs
    if getattr(args, "no_lite_pretrain", False):
        out["lite_residual"] = False
    return out


def run(ev: TinyTLEvaluator, config: Mapping[str, Any], run_dir: Path) -> Dict[str, Any]:
    ctx = make_context(run_dir)
    res = ev.evaluate(candidate=Candidate(dict(config), number=0), ctx=ctx)
    return {**res.metrics, "val_history": res.info["val_history"]}


def memory(ev: TinyTLEvaluator, config: Mapping[str, Any], batch: int) -> Dict[str, float]:
    net, _ = ev.adapted_network(config, pretrained=False)
    net.train()
    paper = profile_training_memory(net, ev.input_shape, batch, norm_rule="paper")
    books = quantize_frozen_weights(net)
    measured = measure_training_step(net, ev.input_shape, batch, memory_saving=True, books=books)
    return {"analytic_kb": paper.train_memory_bytes / 1024, "measured_kb": measured.total_bytes / 1024}
