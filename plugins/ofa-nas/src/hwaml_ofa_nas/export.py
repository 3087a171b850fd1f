"""Deploying a chosen sub-network: ONNX (checked with onnxruntime against torch)
and a state dict saved with its configuration."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

import numpy as np
import torch
from torch import nn

from .supernet import MobileNetV3Subnet, supernet_config

__all__ = ["onnx_bytes", "export_onnx", "check_onnx", "save_subnet", "load_subnet"]


def onnx_bytes(model: nn.Module, input_shape: Tuple[int, ...], opset: int = 17) -> bytes:
    """Serialise ``model`` (in eval mode) to ONNX with torch's TorchScript-based
    exporter (no onnxscript needed)."""
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(*input_shape),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    model.train(was_training)
    return buf.getvalue()


def check_onnx(model: nn.Module, onnx_model: bytes | str | Path, input_shape: Tuple[int, ...], seed: int = 0) -> float:
    """Largest absolute difference between onnxruntime and torch outputs on a
    random input."""
    import onnxruntime as ort

    src = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    return float(np.max(np.abs(ref - got)))


def export_onnx(model: MobileNetV3Subnet, path: str | Path, resolution: int | None = None, batch: int = 1, atol: float = 1e-4) -> Dict[str, Any]:
    """Write ``model`` to ``path`` as ONNX and check it with onnxruntime.

    Raises ``RuntimeError`` when onnxruntime disagrees with torch by more than
    ``atol``; returns ``{"path", "max_abs_diff"}``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    resolution = int(resolution or model.resolution)
    shape = (batch, model.arch.in_channels, resolution, resolution)
    data = onnx_bytes(model, shape)
    onnx.checker.check_model(onnx.load_from_string(data))
    path.write_bytes(data)
    diff = check_onnx(model, path, shape)
    if not diff <= atol:
        raise RuntimeError(f"{path}: onnxruntime output differs from torch by {diff:g} (> {atol:g})")
    return {"path": str(path), "max_abs_diff": diff}


def save_subnet(model: MobileNetV3Subnet, path: str | Path, extra: Mapping[str, Any] | None = None) -> Dict[str, str]:
    """Save a sub-network as ``<path>.pt`` (state dict) and ``<path>.json``
    (sub-network configuration, supernet shape, anything in ``extra``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = path.with_suffix(".pt")
    meta = path.with_suffix(".json")
    torch.save(model.state_dict(), weights)
    meta.write_text(json.dumps({"config": model.config, "arch": model.arch.to_dict(), **dict(extra or {})}, indent=2))
    return {"state_dict": str(weights), "config": str(meta)}


def load_subnet(path: str | Path) -> MobileNetV3Subnet:
    """Rebuild a sub-network saved by :func:`save_subnet` (give either file or the stem;
    the weights load with ``weights_only=True``)."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    weights = path.with_suffix(".pt")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"sub-network config {meta_path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    for key in ("config", "arch"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key {key!r}")
    from .progressive_shrinking import safe_load

    model = MobileNetV3Subnet(supernet_config(meta["arch"]), meta["config"])
    if not weights.is_file():
        raise FileNotFoundError(f"sub-network weights {weights} do not exist")
    model.load_state_dict(safe_load(weights, "a sub-network state dict saved by hwaml-ofa-nas"))
    model.eval()
    return model
