"""Deploying a sub-generator: ONNX checked with onnxruntime, CPU latency measured
with onnxruntime, and an image grid of inputs, teacher and student outputs."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["onnx_bytes", "export_onnx", "onnx_latency_ms", "compare_latency_ms", "image_grid"]


def onnx_bytes(model: nn.Module, input_shape: Tuple[int, ...], opset: int = 17) -> bytes:
    """``model`` (eval mode) as ONNX, batch dimension dynamic; ``input_shape`` includes the batch."""
    was = model.training
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(*input_shape),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    model.train(was)
    return buf.getvalue()


def _session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def export_onnx(model: nn.Module, path: str | Path, sample: torch.Tensor, atol: float = 1e-4) -> Dict[str, Any]:
    """Write ``model`` to ``path`` as ONNX and compare onnxruntime's outputs with torch's on ``sample``.

    Raises ``RuntimeError`` when they differ by more than ``atol``; returns ``{"path", "max_abs_diff", "bytes"}``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = onnx_bytes(model, tuple(sample.shape))
    onnx.checker.check_model(onnx.load_from_string(data))
    path.write_bytes(data)
    sess = _session(data)
    model.eval()
    with torch.no_grad():
        ref = model(sample).numpy()
    got = sess.run(None, {"input": sample.numpy()})[0]
    diff = float(np.max(np.abs(ref - got)))
    if not diff <= atol:
        raise RuntimeError(f"{path}: onnxruntime output differs from torch by {diff:g} (> {atol:g})")
    return {"path": str(path), "max_abs_diff": diff, "bytes": len(data)}


def onnx_latency_ms(model: nn.Module | bytes, input_shape: Tuple[int, ...], threads: int = 1, warmup: int = 5, repeats: int = 30) -> float:
    """Median wall time (ms) of one onnxruntime CPU inference of ``model`` on a batch of ``input_shape``."""
    data = model if isinstance(model, bytes) else onnx_bytes(model, input_shape)
    sess = _session(data, threads)
    x = np.random.default_rng(0).uniform(-1, 1, size=input_shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def compare_latency_ms(models: Sequence[nn.Module], input_shape: Tuple[int, ...], threads: int = 1, rounds: int = 5, repeats: int = 20) -> list:
    """onnxruntime latency (ms) of several models timed in interleaved rounds (the
    models take turns, so a change in the machine's load hits all of them); each
    model's value is the smallest of its per-round medians."""
    sessions = [_session(onnx_bytes(m, input_shape), threads) for m in models]
    x = np.random.default_rng(0).uniform(-1, 1, size=input_shape).astype(np.float32)
    for sess in sessions:
        for _ in range(5):
            sess.run(None, {"input": x})
    best = [float("inf")] * len(sessions)
    for _ in range(rounds):
        for i, sess in enumerate(sessions):
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                sess.run(None, {"input": x})
                times.append(time.perf_counter() - t0)
            best[i] = min(best[i], float(np.median(times) * 1000.0))
    return best


def image_grid(rows: Sequence[torch.Tensor], path: str | Path, scale: int = 2) -> str:
    """A PNG with one row per tensor (images in [-1, 1], NCHW, same count and size per row)."""
    from PIL import Image

    arrays = []
    for row in rows:
        x = ((row.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        arrays.append(np.concatenate(list(x.permute(0, 2, 3, 1).numpy()), axis=1))
    grid = np.concatenate(arrays, axis=0)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return str(path)
