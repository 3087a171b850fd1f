"""TinyEngine against TensorFlow Lite Micro on the same int8 models.

    pip install -e 'plugins/tinyengine[bench]'     # tflite-micro (pinned) + flatbuffers
    python benchmarks/tinyengine/bench_tflm.py [--runs 20]

Both run the *same* quantised network: the int8 .tflite is written from
TinyEngine's quantised IR by ``tflite_writer.py`` (weights inline, explicit PAD
where PyTorch and TFLite padding differ). Reported per model:

* arena bytes: TinyEngine's planned arena (what the generated C declares) and
  TFLM's smallest arena that still allocates and runs, found by bisection (and
  the head/tail split from ``print_allocations``: head = activations and
  scratch, tail = TFLM's persistent runtime structures, which TinyEngine keeps
  as constants in Flash);
* host latency per inference: TinyEngine's generated C (gcc -O2) against TFLM's
  Python interpreter (``invoke`` timed in a loop; TFLM's reference kernels);
* how many outputs are bit-identical between the two;
* the breakdown of the arena ratio: "head ratio" leaves out TFLM's persistent
  tail (per-channel quantisation data and runtime structures, which TinyEngine
  keeps in Flash); with ``--same-padding`` the PAD copies go too, and the head
  ratio is the planner's alone (in-place depthwise + patches against TFLM's
  greedy planner on the same schedule).

PyTorch pads stride-2 convolutions symmetrically, TFLite's SAME pads at the
bottom/right: by default explicit PAD ops keep the network identical (what a
PyTorch-to-TFLite converter emits), and TFLM then also holds the padded copies.
``--same-padding`` drops them (TFLM's best case for memory; outputs then differ
by the padding shift).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tflite_micro.python.tflite_micro import runtime  # noqa: E402
from tflite_writer import write_tflite  # noqa: E402

from hwaml_tinyengine.codegen import build_and_run, build_project, generate_project  # noqa: E402
from hwaml_tinyengine.ir import import_model  # noqa: E402
from hwaml_tinyengine.memory_planner import plan_memory  # noqa: E402
from hwaml_tinyengine.models import mcunet_from_config, mcunet_imagenet_like, mobilenetv2_like  # noqa: E402
from hwaml_tinyengine.quantize import quantize_graph, quantize_input, run_int8  # noqa: E402


def _randomise_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.6 - 0.3)
    return model.eval()


def models():
    torch.manual_seed(0)
    yield "mcunet-like digits r32", mcunet_from_config({"resolution": 32, "width": 1.0, "blocks": [{"kernel": 5, "expand": 6}] * 6})
    yield "mcunet-like w0.35 r96", mcunet_imagenet_like(0.35, 96, num_classes=100)
    yield "mcunet-like w0.5 r128", mcunet_imagenet_like(0.5, 128, num_classes=100)
    yield "mobilenetv2 w0.35 r96", mobilenetv2_like(0.35, 96, num_classes=100)
    yield "mobilenetv2 w0.35 r144", mobilenetv2_like(0.35, 144, num_classes=100)


_CHILD = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
it = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
it.set_input(np.load(sys.argv[3]), 0)
it.invoke()
if sys.argv[4] == "print":
    it.print_allocations()
print("RUN_OK", flush=True)
"""


def _child(model_path: Path, x_path: Path, arena: int, mode: str) -> subprocess.CompletedProcess:
    # TFLM can crash (not raise) when the arena is too small: probe in a child process
    return subprocess.run([sys.executable, "-c", _CHILD, str(model_path), str(arena), str(x_path), mode], capture_output=True, text=True)


def allocations(model_path: Path, x_path: Path, arena: int) -> dict:
    """TFLM's print_allocations: total, head (tensors, scratch) and tail (runtime)."""
    res = _child(model_path, x_path, arena, "print")
    text = res.stdout + res.stderr  # TFLM logs to stderr
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        out[key] = int(m.group(1)) if m else -1
    return out


def runs(model_path: Path, x_path: Path, arena: int) -> bool:
    res = _child(model_path, x_path, arena, "run")
    return res.returncode == 0 and "RUN_OK" in res.stdout


def smallest_arena(model_path: Path, x_path: Path, hi: int) -> int:
    """Bisection on arena_size: the smallest arena (within 16 bytes) that runs."""
    lo = 0
    while not runs(model_path, x_path, hi):
        lo, hi = hi, hi * 2
    while hi - lo > 16:
        mid = (lo + hi) // 2
        if runs(model_path, x_path, mid):
            hi = mid
        else:
            lo = mid
    return hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="inferences timed per model")
    ap.add_argument("--same-padding", action="store_true", help="export SAME padding instead of PAD ops (TFLM's best memory case; outputs shift)")
    args = ap.parse_args()
    head = (
        f"{'model':<23} {'MMACs':>6} {'TE arena KB':>11} {'TFLM arena KB':>13} {'(head/tail)':>13} {'mem ratio':>9} "
        f"{'head ratio':>10} {'TE ms':>7} {'TFLM ms':>8} {'speedup':>7} {'identical':>9}"
    )
    print(head)
    print("-" * len(head))
    mem_ratios, speedups, head_ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models():
            _randomise_bn(model)
            g = import_model(model, model.input_shape)
            gen = torch.Generator().manual_seed(1)
            x = torch.randn(args.runs, *model.input_shape, generator=gen)
            qg = quantize_graph(g, x)
            xq = quantize_input(qg, x)
            plan = plan_memory(qg, patch=True)
            proj = generate_project(qg, plan, Path(tmp) / name.replace(" ", "_"), xq[:2])
            build_project(proj, "model_run_host")
            te_out = build_and_run(proj, xq, repeat=3)
            te_ms = proj.last_ms
            assert np.array_equal(te_out, run_int8(qg, xq)), name

            data = write_tflite(qg, explicit_pad=not args.same_padding)
            model_path = Path(tmp) / f"{name.replace(' ', '_')}.tflite"
            model_path.write_bytes(data)
            x_path = Path(tmp) / "x.npy"
            np.save(x_path, xq[:1])
            arena = smallest_arena(model_path, x_path, 64 * 1024)
            alloc = allocations(model_path, x_path, arena)
            it = runtime.Interpreter.from_bytes(data, arena_size=arena + 1024)
            outs, times = [], []
            for i in range(len(xq)):
                it.set_input(xq[i : i + 1], 0)
                t0 = time.perf_counter()
                it.invoke()
                times.append(time.perf_counter() - t0)
                outs.append(it.get_output(0).reshape(-1))
            tflm_ms = 1000 * float(np.median(times))
            identical = float((np.array(outs) == te_out).all(axis=1).mean())
            mem_ratio = arena / plan.arena_bytes
            speedup = tflm_ms / te_ms
            mem_ratios.append(mem_ratio)
            speedups.append(speedup)
            head_ratios.append(alloc["head"] / plan.arena_bytes)
            print(
                f"{name:<23} {plan.base_macs / 1e6:6.1f} {plan.arena_bytes / 1024:11.1f} {arena / 1024:13.1f} "
                f"{alloc['head'] / 1024:6.1f}/{alloc['tail'] / 1024:<6.1f} {mem_ratio:8.2f}x {head_ratios[-1]:9.2f}x {te_ms:7.2f} {tflm_ms:8.2f} {speedup:6.2f}x {100 * identical:8.0f}%"
            )
    print("-" * len(head))
    gm = lambda v: float(np.exp(np.mean(np.log(v))))  # noqa: E731
    print(f"TFLM arena / TinyEngine arena: geometric mean {gm(mem_ratios):.2f}x; TFLM time / TinyEngine time: geometric mean {gm(speedups):.2f}x (as measured)")
    print(
        f"breakdown: without TFLM's persistent tail (per-channel data TinyEngine keeps in Flash) the ratio is {gm(head_ratios):.2f}x; "
        + ("with SAME padding (no PAD copies) this head ratio is the planner's alone" if args.same_padding else "rerun with --same-padding for the ratio without PAD copies (the planner alone)")
    )


if __name__ == "__main__":
    main()
