"""A trial's trained sub-network as two files, listed in its ``EvalResult.artifacts``.

``checkpoint`` (``.pt``) holds only the static sub-network's state dict
(tensors, read back with ``torch.load(weights_only=True)``);
``checkpoint_meta`` (``.json``) the rest: the candidate's config, the supernet
shape, the data settings it was scored with and its float accuracies. Deploy
finds both through ``trial.artifacts``, never by a file-name convention.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(directory: Any, stem: str, module: Any, meta: Mapping[str, Any]) -> Dict[str, str]:
    """Write ``<stem>.pt`` and ``<stem>.json`` into ``directory``; returns the
    artifacts ``{"checkpoint": ..., "checkpoint_meta": ...}`` (absolute paths)."""
    import torch

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    weights, info = directory / f"{stem}.pt", directory / f"{stem}.json"
    tmp = weights.with_suffix(".pt.tmp")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)
    tmp.replace(weights)
    tmp = info.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json.loads(json.dumps(dict(meta))), indent=1))
    tmp.replace(info)
    return {"checkpoint": str(weights), "checkpoint_meta": str(info)}


def _path(artifacts: Mapping[str, str], key: str, run_dir: Optional[Any], what: str) -> Path:
    if key not in artifacts:
        raise ValueError(f"{what} has no {key!r} artifact (artifacts: {sorted(artifacts) or 'none'}); it was not evaluated by tinynas_digits")
    path = Path(artifacts[key])
    if not path.is_absolute() and run_dir is not None:
        path = Path(run_dir) / path  # relative artifact paths are relative to the run directory
    if not path.is_file():
        raise FileNotFoundError(f"{what}: its {key} {path} does not exist")
    return path


def load_checkpoint(artifacts: Mapping[str, str], run_dir: Optional[Any] = None, what: str = "the trial") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(state_dict, meta)`` of a checkpoint :func:`save_checkpoint` wrote.

    A ``.pt`` holding anything but tensors (a crafted pickle) is refused by
    ``torch.load(weights_only=True)`` with ``pickle.UnpicklingError``; nothing in
    it runs."""
    import torch

    weights = _path(artifacts, "checkpoint", run_dir, what)
    info = _path(artifacts, "checkpoint_meta", run_dir, what)
    try:
        meta = json.loads(info.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{info}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{weights} is not a state dict of tensors")
    return dict(state), meta
