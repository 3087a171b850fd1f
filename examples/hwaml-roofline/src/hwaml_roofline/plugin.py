"""The module named by this distribution's ``hwaml`` entry point.

hwaml loads it once per process and registers it with every run's plugin
manager, so module-level hook implementations here see every run. It stays
thin: it tells Hydra where the configs are and observes finished trials. The
cost backend itself is a class (:class:`hwaml_roofline.RooflineCost`) that Hydra
instantiates only when a config selects it (``backend=[roofline_cortex_m7]``).
"""

from __future__ import annotations

import json
from typing import Any, List

from hwaml import RunContext, Trial, hookimpl

JSONL_NAME = "roofline_trials.jsonl"


@hookimpl
def config_search_path() -> List[str]:
    return ["pkg://hwaml_roofline.conf"]


def _uses_roofline(cfg: Any) -> bool:
    """Whether the run selected at least one roofline backend."""
    if cfg is None:
        return True  # a SearchLoop built in code without a config: log it
    for node in (cfg.get("backend") or {}).values():
        if str(node.get("_target_", "")).startswith("hwaml_roofline."):
            return True
    return False


@hookimpl
def trial_completed(trial: Trial, ctx: RunContext) -> None:
    # Only runs that use a roofline backend get the file; installing the plugin
    # must not litter every other run directory.
    if not _uses_roofline(ctx.cfg):
        return
    error = (trial.error or "").strip().splitlines()
    line = {
        "number": trial.number,
        "status": trial.status,
        "config": trial.config,
        "metrics": dict(trial.metrics),
        "cost": dict(trial.cost),
        "duration_s": trial.duration_s,
        "error": error[-1] if error else None,
    }
    with open(ctx.run_dir / JSONL_NAME, "a") as f:
        f.write(json.dumps(line, default=str) + "\n")
