"""The shipped ``evaluator=apq_fashion`` preset as an object (its keys read from
the preset file, no Hydra), shrunk to what a shared 2-core CPU trains and
samples within the benchmarks' time: ofa-nas's smallest supernet shape (``test_tiny``: two
stages, widths 8 and 16) with one input channel at 16 px, trained by progressive
shrinking on 2,000 training images (7 epochs in all), validated on the preset's 5,000 held-out training
images, tested on the 10,000 t10k images. The shrinking is stated in
docs/benchmarks/apq.md; ``hwaml run experiment=apq_joint_fashion`` runs the
preset at its own scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "plugins" / "apq" / "src" / "hwaml_apq" / "conf" / "evaluator"

#: the benchmark's shrinking of the preset (see the module doc)
BENCH_SCALE: Dict[str, Any] = {
    "arch": "test_tiny",
    "arch_overrides": {"in_channels": 1, "resolutions": [16]},
    "data": {"train_limit": 2000},
    "training": {"epochs": {"full": 3, "kernel": 1, "depth": [1, 1], "expand": [1, 1]}},
    "calibration_size": 256,
    "eval_batch_size": 500,
}


def preset(name: str = "apq_fashion") -> Dict[str, Any]:
    """The evaluator preset's keys (its ``defaults`` list resolved)."""
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    base = OmegaConf.create({})
    for d in raw.get("defaults", []):
        if d != "_self_":
            base = OmegaConf.merge(base, OmegaConf.create(preset(d)))
    own = OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"]) if "defaults" in raw else raw
    return OmegaConf.to_container(OmegaConf.merge(base, own), resolve=True)


def fashion_evaluator(qat: Optional[Dict[str, Any]] = None, scale: Optional[Dict[str, Any]] = None, **overrides: Any):
    """``apq_fashion`` with ``scale`` (default :data:`BENCH_SCALE`) merged in."""
    from hwaml_apq.evaluator import APQEvaluator

    cfg = OmegaConf.merge(OmegaConf.create(preset("apq_fashion")), OmegaConf.create(BENCH_SCALE if scale is None else scale))
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("_target_", None)
    if qat:
        cfg["qat"] = {**cfg["qat"], **qat}
    cfg.update({"progress": False, **overrides})
    return APQEvaluator(**cfg)
