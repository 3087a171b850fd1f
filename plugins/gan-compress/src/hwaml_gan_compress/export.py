"""Deploying a sub-generator: ONNX checked with onnxruntime, CPU latency measured
with onnxruntime, and an image grid of inputs, teacher and student outputs."""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["CLOCKS", "GRAPH_LEVELS", "onnx_bytes", "export_onnx", "onnx_latency_ms", "compare_latency", "compare_latency_ms", "image_grid"]


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


#: onnxruntime graph optimisation levels by name (``all``: onnxruntime's default, with the NCHWc layout transformer)
GRAPH_LEVELS = ("disable", "basic", "extended", "all")
#: what a latency is: ``cpu``, the smallest CPU time of the calling thread over the timed runs
#: (onnxruntime with one intra-op thread computes on the caller's thread, so time the core
#: spends on other jobs of a shared machine is not counted); ``wall``, the smallest wall time
CLOCKS = ("cpu", "wall")


def _session(model_bytes: bytes, threads: int = 1, graph_optimization: str = "all", profile_prefix: Optional[str] = None):
    """An onnxruntime CPU session: ``threads`` intra-op threads, sequential execution, the
    graph optimisation level by name; ``profile_prefix``: write onnxruntime's per-node profile."""
    import onnxruntime as ort

    if graph_optimization not in GRAPH_LEVELS:
        raise ValueError(f"graph_optimization={graph_optimization!r} is not one of {GRAPH_LEVELS}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[graph_optimization]
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def _timed_runs(sess: Any, x: np.ndarray, repeats: int) -> Tuple[List[float], List[float]]:
    """Wall and calling-thread CPU seconds of ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.thread_time(), time.perf_counter()
        sess.run(None, {"input": x})
        t1, c1 = time.perf_counter(), time.thread_time()
        wall.append(t1 - t0)
        cpu.append(c1 - c0)
    return wall, cpu


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


def onnx_latency_ms(
    model: nn.Module | bytes, input_shape: Tuple[int, ...], threads: int = 1, warmup: int = 5, repeats: int = 30, clock: str = "cpu", graph_optimization: str = "all"
) -> float:
    """Latency (ms) of one onnxruntime CPU inference of ``model`` on a batch of ``input_shape``:
    the smallest of ``repeats`` timed runs after ``warmup`` (``clock``: see :data:`CLOCKS`)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r} is not one of {CLOCKS}")
    data = model if isinstance(model, bytes) else onnx_bytes(model, input_shape)
    sess = _session(data, threads, graph_optimization)
    x = np.random.default_rng(0).uniform(-1, 1, size=input_shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    wall, cpu = _timed_runs(sess, x, repeats)
    return float(min(cpu if clock == "cpu" else wall) * 1000.0)


def compare_latency(
    models: Sequence[nn.Module], input_shape: Tuple[int, ...], threads: int = 1, rounds: int = 5, repeats: int = 20, graph_optimization: str = "all"
) -> List[Dict[str, float]]:
    """onnxruntime latency of several models timed in interleaved rounds (the models take
    turns, so a change in the machine's load hits all of them): per model ``{"cpu", "wall"}``,
    the smallest calling-thread CPU time and wall time (ms) over all runs."""
    sessions = [_session(onnx_bytes(m, input_shape), threads, graph_optimization) for m in models]
    x = np.random.default_rng(0).uniform(-1, 1, size=input_shape).astype(np.float32)
    for sess in sessions:
        for _ in range(5):
            sess.run(None, {"input": x})
    best = [{"cpu": float("inf"), "wall": float("inf")} for _ in sessions]
    for _ in range(rounds):
        for i, sess in enumerate(sessions):
            wall, cpu = _timed_runs(sess, x, repeats)
            best[i] = {"cpu": min(best[i]["cpu"], min(cpu) * 1000.0), "wall": min(best[i]["wall"], min(wall) * 1000.0)}
    return best


def compare_latency_ms(
    models: Sequence[nn.Module], input_shape: Tuple[int, ...], threads: int = 1, rounds: int = 5, repeats: int = 20, clock: str = "cpu", graph_optimization: str = "all"
) -> List[float]:
    """:func:`compare_latency`'s ``clock`` figure (ms) per model (see :data:`CLOCKS`)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r} is not one of {CLOCKS}")
    return [r[clock] for r in compare_latency(models, input_shape, threads, rounds, repeats, graph_optimization)]


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
