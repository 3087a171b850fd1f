"""Analytic vs measured training memory of the six TinyTL methods (no training needed).

For each method on the network the evaluator trains (the pretrained network holds lite
residuals at the published placement, trained by the L methods and frozen otherwise;
frozen weights k-means 8-bit), at batch 8 and batch 1:

- analytic: the paper's model (``norm_rule=paper``, ``peak_rule=paper``: the published
  profiler's forward-pass peak with in-place norms/activations), the same saved tensors on
  the stricter forward/backward walk (``peak_rule=schedule``), and the exact norm rule
  (``norm_rule=exact``);
- measured: one real Adam step in the memory-saving mode (saved-for-backward bytes
  counted with saved_tensors_hooks + parameters + gradients + Adam state), in the
  memory-saving mode with block recomputation, and in plain PyTorch autograd (what
  the reference code's users measured).

    python benchmarks/tinytl/memory_table.py [--arch proxyless_tiny] [--resolution 224 --in-channels 3] [--analytic-only]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from hwaml_tinytl.evaluator import TinyTLEvaluator
from hwaml_tinytl.measure import measure_training_step
from hwaml_tinytl.memory import profile_training_memory
from hwaml_tinytl.methods import METHODS
from hwaml_tinytl.quantize import quantize_frozen_weights

KB = 1024


def network(arch, overrides, method, target, quantise=True):
    """The untrained network the evaluator would train for ``method`` (default configuration)."""
    ev = TinyTLEvaluator(target=target, method=method, arch=arch, arch_overrides=overrides or None, progress=False)
    net, _ = ev.adapted_network(ev.default_config(), pretrained=False)
    books = quantize_frozen_weights(net) if quantise else {}
    return net.train(), books, ev


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="proxyless_tiny")
    ap.add_argument("--target", default="fashion_5_9", help="sets the classifier's classes (fashion_5_9: 5, digits: 10)")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--in-channels", type=int, default=None)
    ap.add_argument("--batches", default="8,1")
    ap.add_argument("--analytic-only", action="store_true", help="no measured steps (large networks)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {k: v for k, v in (("resolution", args.resolution), ("in_channels", args.in_channels)) if v is not None}
    batches = [int(b) for b in args.batches.split(",")]
    t0 = time.time()
    _, _, ev0 = network(args.arch, overrides, "ft_last", args.target, quantise=False)
    shape = ev0.input_shape
    print(f"# TinyTL training memory, {args.arch} {overrides or ''} ({shape[1]}x{shape[2]}x{shape[0]}), target {args.target}; torch {torch.__version__}, {platform.machine()}")
    if args.analytic_only:
        analytic_only(args, overrides, shape, batches)
        print(f"\n(wall {time.time() - t0:.0f} s)")
        return
    rows = {}
    for batch in batches:
        print(f"\n## batch {batch}: saved for backward (KB)")
        print(f"| method | trainable params | analytic (paper) | analytic (exact) | measured, memory-saving | measured / exact | measured, plain PyTorch | plain / memory-saving |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for method in METHODS:
            net, books, _ = network(args.arch, overrides, method, args.target)
            paper = profile_training_memory(net, shape, batch, norm_rule="paper")
            sched = profile_training_memory(net, shape, batch, norm_rule="paper", peak_rule="schedule")
            exact = profile_training_memory(net, shape, batch, norm_rule="exact", peak_rule="schedule")
            ms = measure_training_step(net, shape, batch, memory_saving=True, books=books)
            plain = measure_training_step(net, shape, batch, memory_saving=False)
            rc = measure_training_step(net, shape, batch, memory_saving=True, books=books, recompute=True)
            rc_an = profile_training_memory(net, shape, batch, norm_rule="exact", recompute=True, peak_rule="schedule")
            rows[(batch, method)] = (paper, exact, ms, plain, rc, rc_an, sched)
            print(
                f"| {method} | {paper.trainable_params} | {paper.saved_bytes / KB:.1f} | {exact.saved_bytes / KB:.1f} | {ms.saved_bytes / KB:.1f} | "
                f"{ms.saved_bytes / max(1, exact.saved_bytes):.3f} | {plain.saved_bytes / KB:.1f} | {plain.saved_bytes / max(1, ms.saved_bytes):.2f}x |"
            )
        print(f"\n## batch {batch}: training memory (KB)")
        print("| method | analytic paper (weights + peak act.) | analytic paper saved, schedule walk | analytic exact (schedule walk) | measured memory-saving (params + saved + grads + Adam) | measured plain | peak RSS growth, memory-saving step | FT-Full / method (paper) | FT-Full / method (schedule walk) | FT-Full / method (measured) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        full_p, _, full_m, _, _, _, full_s = rows[(batch, "ft_full")]
        for method in METHODS:
            paper, exact, ms, plain, _, _, sched = rows[(batch, method)]
            rss = "n/a" if ms.rss_peak_delta_bytes is None else f"{ms.rss_peak_delta_bytes / KB:.0f}"
            print(
                f"| {method} | {paper.train_memory_bytes / KB:.1f} | {sched.train_memory_bytes / KB:.1f} | {exact.train_memory_bytes / KB:.1f} | {ms.total_bytes / KB:.1f} | {plain.total_bytes / KB:.1f} | {rss} | "
                f"{full_p.train_memory_bytes / paper.train_memory_bytes:.1f}x | {full_s.train_memory_bytes / sched.train_memory_bytes:.1f}x | {full_m.total_bytes / ms.total_bytes:.1f}x |"
            )
        print(f"\n## batch {batch}: memory-saving mode with block recomputation (each mobile block keeps only its input)")
        print("| method | saved KB analytic (exact, recompute) | saved KB measured | measured / analytic | measured total KB (params + saved + grads + Adam) | analytic peak KB (weights + peak incl. one block run again) | FT-Full (memory-saving, no recompute) / method, measured total |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for method in METHODS:
            _, _, _, _, rc, rc_an, _ = rows[(batch, method)]
            print(
                f"| {method} | {rc_an.saved_bytes / KB:.1f} | {rc.saved_bytes / KB:.1f} | {rc.saved_bytes / max(1, rc_an.saved_bytes):.3f} | {rc.total_bytes / KB:.1f} | "
                f"{rc_an.train_memory_bytes / KB:.1f} | {full_m.total_bytes / rc.total_bytes:.1f}x |"
            )
    print(f"\n(wall {time.time() - t0:.0f} s)")


def analytic_only(args, overrides, shape, batches) -> None:
    for batch in batches:
        print(f"\n## batch {batch}: analytic training memory (KB), no measurement")
        print("| method | trainable params | weights KB | saved for backward KB (paper) | peak act. KB (paper) | total KB (paper) | total KB (schedule walk) | total KB (exact norm, schedule walk) | FT-Full / method (paper) | FT-Full / method (schedule walk) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rows = {}
        for method in METHODS:
            net, _, _ = network(args.arch, overrides, method, args.target, quantise=False)
            rows[method] = (
                profile_training_memory(net, shape, batch, norm_rule="paper"),
                profile_training_memory(net, shape, batch, norm_rule="paper", peak_rule="schedule"),
                profile_training_memory(net, shape, batch, norm_rule="exact", peak_rule="schedule"),
            )
        fp, fs, _ = rows["ft_full"]
        for method, (p, sc, ex) in rows.items():
            print(
                f"| {method} | {p.trainable_params} | {p.weight_bytes / KB:.0f} | {p.saved_bytes / KB:.0f} | {p.peak_activation_bytes / KB:.0f} | {p.train_memory_bytes / KB:.0f} | "
                f"{sc.train_memory_bytes / KB:.0f} | {ex.train_memory_bytes / KB:.0f} | {fp.train_memory_bytes / p.train_memory_bytes:.1f}x | {fs.train_memory_bytes / sc.train_memory_bytes:.1f}x |"
            )


if __name__ == "__main__":
    main()
