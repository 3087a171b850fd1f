"""The shipped ``evaluator=apq_fashion`` preset as an object (the same settings,
so the same cached supernet as ``hwaml run experiment=apq_joint_fashion``), with
CPU-sized quantization-aware fine-tuning for the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "plugins" / "apq" / "src" / "hwaml_apq" / "conf" / "evaluator"


def preset(name: str = "apq_fashion") -> Dict[str, Any]:
    """The evaluator preset's keys (its ``defaults`` list resolved; no Hydra)."""
    raw = OmegaConf.load(CONF / f"{name}.yaml")
    base = OmegaConf.create({})
    for d in raw.get("defaults", []):
        if d != "_self_":
            base = OmegaConf.merge(base, OmegaConf.create(preset(d)))
    own = OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"]) if "defaults" in raw else raw
    return OmegaConf.to_container(OmegaConf.merge(base, own), resolve=True)


def fashion_evaluator(qat: Optional[Dict[str, Any]] = None, **overrides: Any):
    from hwaml_apq.evaluator import APQEvaluator

    cfg = preset("apq_fashion")
    cfg.pop("_target_", None)
    if qat:
        cfg["qat"] = {**cfg["qat"], **qat}
    cfg.update({"progress": False, **overrides})
    return APQEvaluator(**cfg)
