"""Trial checkpoints of ``tinyengine_digits``: tensors in ``.pt``, metadata in JSON.

A checkpoint is two files side by side:

``trial_<n>.pt``
    a plain dict of tensors, loaded with ``torch.load(..., weights_only=True)``
    (so a crafted pickle cannot run code): ``state_dict`` (a dict of tensors),
    ``calib`` (float NCHW calibration images), ``x_test``/``y_test`` (the test
    split).
``trial_<n>.json``
    the rest: ``format``, the candidate ``config``, ``float_accuracy``,
    ``int8_accuracy``, ``num_classes``, ``in_channels``.

The evaluator lists both in ``EvalResult.artifacts`` (``checkpoint``,
``checkpoint_meta``); deploy steps find them through ``trial.artifacts``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import torch

__all__ = ["CheckpointError", "FORMAT", "TENSOR_KEYS", "save_checkpoint", "load_checkpoint", "meta_path"]

FORMAT = "hwaml_tinyengine.checkpoint/1"
#: what the ``.pt`` file holds
TENSOR_KEYS = ("state_dict", "calib", "x_test", "y_test")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, not plain tensors, or of another candidate."""


def meta_path(path: Path | str) -> Path:
    """The JSON file beside a ``.pt`` checkpoint."""
    return Path(path).with_suffix(".json")


def save_checkpoint(path: Path | str, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> Tuple[Path, Path]:
    """Write ``tensors`` (the :data:`TENSOR_KEYS`) to ``path`` and ``meta`` (JSON-able)
    beside it; returns both paths."""
    missing = [k for k in TENSOR_KEYS if k not in tensors]
    if missing:
        raise ValueError(f"save_checkpoint: tensors lack {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in tensors["state_dict"].items()},
        **{k: torch.as_tensor(tensors[k]).detach().cpu() for k in TENSOR_KEYS if k != "state_dict"},
    }
    torch.save(payload, path)
    mpath = meta_path(path)
    mpath.write_text(json.dumps({"format": FORMAT, **dict(meta)}, indent=1, sort_keys=True))
    return path, mpath


def load_checkpoint(path: Path | str, meta_file: Path | str | None = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """``(tensors, meta)`` of a checkpoint, loaded safely.

    :raises CheckpointError: the file is missing, is not a plain-tensor
        checkpoint (a pickle of arbitrary objects is refused, never run), lacks
        a key, or its JSON metadata is missing or invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global that is not a tensor/primitive type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is not a plain tensor checkpoint; refused to unpickle it ({first})") from exc
    except (RuntimeError, EOFError, OSError) as exc:  # truncated or not a torch file at all
        raise CheckpointError(f"checkpoint {path} cannot be read as a torch file: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, expected a dict with {list(TENSOR_KEYS)}")
    missing = [k for k in TENSOR_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing} (has {sorted(data)})")
    if not isinstance(data["state_dict"], dict) or not all(isinstance(v, torch.Tensor) for v in data["state_dict"].values()):
        raise CheckpointError(f"checkpoint {path}: state_dict is not a dict of tensors")
    for k in TENSOR_KEYS[1:]:
        if not isinstance(data[k], torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: {k} is a {type(data[k]).__name__}, expected a tensor")
    mpath = Path(meta_file) if meta_file is not None else meta_path(path)
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {path}: its metadata {mpath} does not exist")
    try:
        meta = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint metadata {mpath}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint metadata {mpath}: format is {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}")
    return data, meta
