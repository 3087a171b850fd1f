"""Why the compressed generator is not 5x faster on this CPU at 28x28, and where it is.

    python benchmarks/gan_compress/latency.py                       # the full table (~3 min)
    python benchmarks/gan_compress/latency.py --sizes 28 64 --batches 1 --levels all

Teacher (the presets' ResNet generator, ngf 16, 9 blocks) against a compressed
sub-generator (``--config``, default: the sub-generator the paired benchmark's search
found), both exported to ONNX and run with onnxruntime on one CPU thread, for

* onnxruntime's graph optimisation level (``disable`` / ``basic`` / ``extended`` / ``all``),
  always with intra-op threads = 1, inter-op threads = 1 and sequential execution;
* the batch size (latency is reported per image);
* the image side (28: the trained task; 64 and 128: the same edges -> garments task
  with Fashion-MNIST upsampled, ``data.image_size`` of the ``fashion_*`` sources;
  latency depends on shapes, so these rows need no trained weights);
* the export as it is deployed: instance norm is already one fused ``InstanceNormalization``
  node per layer; each reflection pad is exported with ~7 shape-computing nodes, which
  onnxruntime's optimiser folds into constants (the node counts before and after are printed).

Timing: teacher and student take turns in ``--rounds`` rounds of ``--repeats`` runs after
``--warmup`` runs; each reports the minimum over all runs of wall time and of the calling
thread's CPU time (onnxruntime with one intra-op thread computes on the caller's thread,
so CPU time does not count the time other jobs of this shared machine take the core).
The per-operator profile (onnxruntime's profiler, ``--profile``) splits one image's time
by operator type, which is where the 28x28 speedup goes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from hwaml_gan_compress.export import onnx_bytes
from hwaml_gan_compress.generators import MobileResnetGenerator, ResnetGenerator, count_config_macs, init_weights
from hwaml_gan_compress.macs import count_module_macs

LEVELS = ("disable", "basic", "extended", "all")


def session(model_bytes, level="all", profile_dir=None):
    """The backend's own session settings (one thread, sequential), at a graph level."""
    from hwaml_gan_compress.export import _session

    return _session(model_bytes, 1, level, profile_prefix=None if profile_dir is None else os.path.join(profile_dir, "ort"))


def node_count(model_bytes, level):
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                         "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]  # fmt: skip
        opts.optimized_model_filepath = path
        ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        return len(onnx.load(path).graph.node)


def time_pair(sessions, x, warmup, rounds, repeats):
    """Interleaved rounds; per session the min over all runs of (wall ms, thread-CPU ms) and the median wall."""
    feeds = {"input": x}
    for s in sessions:
        for _ in range(warmup):
            s.run(None, feeds)
    wall = [[] for _ in sessions]
    cpu = [[] for _ in sessions]
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            for _ in range(repeats):
                c0, t0 = time.thread_time(), time.perf_counter()
                s.run(None, feeds)
                t1, c1 = time.perf_counter(), time.thread_time()
                wall[i].append(t1 - t0)
                cpu[i].append(c1 - c0)
    return [{"min_ms": 1e3 * min(w), "median_ms": 1e3 * float(np.median(w)), "cpu_min_ms": 1e3 * min(c), "cpu_median_ms": 1e3 * float(np.median(c))} for w, c in zip(wall, cpu)]


def profile_by_op(model_bytes, x, runs=50):
    """Microseconds per run spent in each operator type (onnxruntime's profiler), node
    counts per type, and the median whole-run time."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(model_bytes, "all", profile_dir=tmp)
        for _ in range(10):
            s.run(None, {"input": x})
        path = s.end_profiling()  # warm-up runs are profiled apart
        s = session(model_bytes, "all", profile_dir=tmp)
        for _ in range(runs):
            s.run(None, {"input": x})
        path = s.end_profiling()
        with open(path) as f:
            events = json.load(f)
    per_op = collections.defaultdict(float)
    count = collections.Counter()
    total = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            total.append(e["dur"])
    return {op: d / runs for op, d in per_op.items()}, {op: c // runs for op, c in count.items()}, float(np.median(total))


OTHER_PAIRS = [
    (16, "4_4_4_4_4_4_4_4", [28, 128]),
    (16, "16_16_16_16_16_16_16_16", [128]),
    (64, "16_16_24_56_48_56_24_48", [64, 128]),
    (64, "16_16_32_16_32_32_16_16", [128]),
]


def others():
    print("| teacher ngf | student | side | graph opt | MACs ratio | teacher ms (min CPU) | student ms (min CPU) | speedup (CPU) | speedup (min wall) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ngf, cfg, sides in OTHER_PAIRS:
        t = init_weights(ResnetGenerator(1, 1, ngf, 9), seed=0).eval()
        s = init_weights(MobileResnetGenerator(cfg, 1, 1, 9), seed=0).eval()
        for side in sides:
            x = np.random.default_rng(0).uniform(-1, 1, size=(1, 1, side, side)).astype(np.float32)
            tb, sb = onnx_bytes(t, (1, 1, side, side)), onnx_bytes(s, (1, 1, side, side))
            ratio = count_module_macs(t, (1, side, side)) / count_config_macs(cfg, 1, 1, 9, side, side)
            for level in ("extended", "all"):
                a, b = time_pair([session(tb, level), session(sb, level)], x, 3, 4, 30 if side <= 64 else 6)
                print(f"| {ngf} | {cfg} | {side} | {level} | {ratio:.1f}x | {a['cpu_min_ms']:.2f} | {b['cpu_min_ms']:.2f} | {a['cpu_min_ms'] / b['cpu_min_ms']:.2f}x | {a['min_ms'] / b['min_ms']:.2f}x |")
                sys.stdout.flush()
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="4_4_6_14_12_14_6_12", help="the compressed sub-generator (8 numbers, ngf-16 units)")
    ap.add_argument("--ngf", type=int, default=16, help="teacher ngf")
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=LEVELS)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="also split the 28x28 time by operator type")
    ap.add_argument("--others", action="store_true", help="instead: other pairs (the smallest and the largest ngf-16 sub-generators; "
                    "the published ngf-64 teacher against students of its choice sets), batch 1, levels extended and all")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import onnxruntime as ort

    if args.others:
        return others()
    teacher = init_weights(ResnetGenerator(1, 1, args.ngf, 9), seed=0).eval()
    student = init_weights(MobileResnetGenerator(args.config, 1, 1, 9), seed=0).eval()
    print(f"# onnxruntime {ort.__version__} CPU, 1 intra-op thread, 1 inter-op thread, sequential; machine: {platform.machine()}, {os.cpu_count()} cores (shared)")
    print(f"# teacher ResNet ngf {args.ngf} 9 blocks vs sub-generator {args.config}; {args.rounds} interleaved rounds x {args.repeats} runs after {args.warmup} warm-up; per image")
    t_bytes = {s: onnx_bytes(teacher, (1, 1, s, s)) for s in args.sizes}
    s_bytes = {s: onnx_bytes(student, (1, 1, s, s)) for s in args.sizes}
    print(f"# ONNX nodes as exported: teacher {node_count(t_bytes[args.sizes[0]], 'disable')}, student {node_count(s_bytes[args.sizes[0]], 'disable')}; "
          f"after level 'all': teacher {node_count(t_bytes[args.sizes[0]], 'all')}, student {node_count(s_bytes[args.sizes[0]], 'all')}")  # fmt: skip
    print()
    print("| side | batch | graph opt | teacher MACs (M) | student MACs (M) | MACs ratio | teacher ms (min wall / min CPU) | student ms (min wall / min CPU) | speedup (wall) | speedup (CPU) | speedup (median wall) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for side in args.sizes:
        tm = count_module_macs(teacher, (1, side, side))
        sm = count_config_macs(args.config, 1, 1, 9, side, side)
        for batch in args.batches:
            x = np.random.default_rng(0).uniform(-1, 1, size=(batch, 1, side, side)).astype(np.float32)
            for level in args.levels:
                reps = max(3, args.repeats // batch) if side <= 64 else max(3, args.repeats // (4 * batch))
                t, s = time_pair([session(t_bytes[side], level), session(s_bytes[side], level)], x, max(2, args.warmup // batch), args.rounds, reps)
                per = 1.0 / batch
                print(
                    f"| {side} | {batch} | {level} | {tm / 1e6:.1f} | {sm / 1e6:.2f} | {tm / sm:.1f}x | {t['min_ms'] * per:.3f} / {t['cpu_min_ms'] * per:.3f} | "
                    f"{s['min_ms'] * per:.3f} / {s['cpu_min_ms'] * per:.3f} | {t['min_ms'] / s['min_ms']:.2f}x | {t['cpu_min_ms'] / s['cpu_min_ms']:.2f}x | {t['median_ms'] / s['median_ms']:.2f}x |"
                )  # fmt: skip
                sys.stdout.flush()
    if args.profile:
        side = args.sizes[0]
        x = np.random.default_rng(0).uniform(-1, 1, size=(1, 1, side, side)).astype(np.float32)
        print()
        print(f"Per-operator time at {side}x{side}, batch 1, level all (onnxruntime profiler, microseconds per image; nodes of that type)")
        print()
        rows = {}
        totals = {}
        for name, b in (("teacher", t_bytes[side]), ("student", s_bytes[side])):
            per_op, nodes, total = profile_by_op(b, x)
            rows[name] = (per_op, nodes)
            totals[name] = total
        ops = sorted(set(rows["teacher"][0]) | set(rows["student"][0]), key=lambda o: -(rows["teacher"][0].get(o, 0) + rows["student"][0].get(o, 0)))
        print("| operator | teacher us (nodes) | student us (nodes) |")
        print("|---|---|---|")
        for op in ops:
            cells = [f"{rows[n][0].get(op, 0):.0f} ({rows[n][1].get(op, 0)})" for n in ("teacher", "student")]
            print(f"| {op} | " + " | ".join(cells) + " |")
        kern = {n: sum(rows[n][0].values()) for n in rows}
        print(f"| sum of kernels | {kern['teacher']:.0f} | {kern['student']:.0f} |")
        print(f"| whole run (median) | {totals['teacher']:.0f} | {totals['student']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
