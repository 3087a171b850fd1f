"""TinyNAS stage 2a: train the once-for-all supernet of the chosen space.

Progressive shrinking comes from ``hwaml_ofa_nas.progressive_shrinking`` (full
network, then elastic kernel, depth and expand ratio, distilled from the full
network). The trained supernet is kept as two files: ``supernet.pt`` holds only
tensors (its state dict, loaded with ``torch.load(weights_only=True)``) and
``supernet.json`` beside it the shape and the training settings, so that a
resumed run or an executor worker reloads instead of retraining, and a file
that is not plain tensors is refused rather than unpickled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .config import TrainingConfig

log = logging.getLogger("hwaml.tinynas")

__all__ = ["SUPERNET_WEIGHTS", "SUPERNET_META", "schedule", "train_supernet", "save_supernet", "load_supernet", "read_supernet_meta"]

SUPERNET_WEIGHTS = "supernet.pt"
SUPERNET_META = "supernet.json"


def schedule(arch: Any, training: TrainingConfig) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(epochs, lrs)`` per phase for this shape: a per-choice list (depth,
    expand) longer than the shape's phases keeps its last entries, so the
    digits schedule also serves shapes with fewer choices."""
    need = {"depth": len(arch.depth_choices) - 1, "expand": len(arch.expand_choices) - 1}
    out = []
    for table in (training.epochs, training.lrs):
        t = dict(table)
        for key, n in need.items():
            v = t.get(key)
            if isinstance(v, (list, tuple)) and len(v) > n:
                t[key] = list(v)[len(v) - n :] if n else []
        out.append(t)
    return out[0], out[1]


def train_supernet(arch: Any, training: TrainingConfig, data: Any, seed: int, progress: bool) -> Tuple[Any, Any]:
    """A fresh :class:`~hwaml_tinynas.supernet.MCUSupernet` of ``arch`` trained on
    ``data`` (ofa-nas ``DataSplits``); returns ``(net, report)``."""
    import torch

    from hwaml_ofa_nas.progressive_shrinking import build_schedule, train_progressive_shrinking

    from .supernet import MCUSupernet

    torch.manual_seed(seed)
    net = MCUSupernet(arch)
    phases = build_schedule(arch.kernel_choices, arch.depth_choices, arch.expand_choices, *schedule(arch, training))
    log.info("tinynas: training the supernet of w=%g r=%d with progressive shrinking (%s)", arch.width_mult, arch.resolutions[0], " -> ".join(p.name for p in phases))
    # The full phase trains one network (the largest): one pass per step is
    # enough; the elastic phases sample ``subnets_per_step`` sub-networks.
    common = dict(batch_size=training.batch_size, kd_ratio=training.kd_ratio, seed=seed, calibration_size=training.calibration_size, progress=progress)
    full = [p for p in phases if p.name == "full"]
    report = train_progressive_shrinking(net, data, full, subnets_per_step=1, **common) if full else None
    rest = [p for p in phases if p.name != "full"]
    if rest:
        later = train_progressive_shrinking(net, data, rest, subnets_per_step=training.subnets_per_step, **common)
        report = later if report is None else type(later)(report.phases + later.phases)
    return net.eval(), report


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def save_supernet(net: Any, directory: Any, settings: Mapping[str, Any], report: Any = None) -> Dict[str, str]:
    """Write ``supernet.pt`` (state dict: tensors only) and ``supernet.json``
    (shape, training settings, the training report) into ``directory``.

    The JSON is written last: a reader that finds it finds complete weights."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, meta = directory / SUPERNET_WEIGHTS, directory / SUPERNET_META
    tmp = weights.with_suffix(".pt.tmp")
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    tmp.replace(weights)
    _write_json(meta, {"arch": net.arch.to_dict(), "settings": json.loads(json.dumps(dict(settings))), "report": report.to_dict() if report is not None else None})
    return {"weights": str(weights), "meta": str(meta)}


def read_supernet_meta(directory: Any) -> Optional[Dict[str, Any]]:
    """``supernet.json`` of ``directory`` (``None`` when there is none)."""
    path = Path(directory) / SUPERNET_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc


def load_supernet(directory: Any) -> Any:
    """The supernet :func:`save_supernet` left in ``directory``.

    The weights are read with ``torch.load(weights_only=True)``: a file holding
    anything but tensors (a crafted pickle) raises ``pickle.UnpicklingError``
    and nothing in it runs."""
    import torch

    from hwaml_ofa_nas.supernet import supernet_config

    from .supernet import MCUSupernet

    directory = Path(directory)
    meta = read_supernet_meta(directory)
    if meta is None:
        raise FileNotFoundError(f"{directory / SUPERNET_META} does not exist: no trained supernet in {directory}")
    state = torch.load(directory / SUPERNET_WEIGHTS, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{directory / SUPERNET_WEIGHTS} is not a state dict of tensors")
    net = MCUSupernet(supernet_config(meta["arch"]))
    net.load_state_dict(state)
    return net.eval()
