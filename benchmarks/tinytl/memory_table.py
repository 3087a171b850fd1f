"""Analytic vs measured training memory of the six TinyTL methods (no training needed).

For each method on the ProxylessNAS-shaped backbone (lite residuals at the published
placement for the L methods, frozen weights k-means 8-bit), at batch 8 and batch 1:

- analytic: the paper's model (``norm_rule=paper``) and the exact rule (``norm_rule=exact``);
- measured: one real Adam step in the memory-saving mode (saved-for-backward bytes
  counted with saved_tensors_hooks + parameters + gradients + Adam state), in the
  memory-saving mode with block recomputation, and in plain PyTorch autograd (what
  the reference code's users measured).

    python benchmarks/tinytl/memory_table.py [--arch proxyless_tiny] [--classes 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from hwaml_tinytl.backbone import MobileNetV2Backbone, backbone_config, replace_classifier
from hwaml_tinytl.lite_residual import insert_lite_residuals
from hwaml_tinytl.measure import measure_training_step
from hwaml_tinytl.memory import profile_training_memory
from hwaml_tinytl.methods import METHODS, configure_method, uses_lite_residual
from hwaml_tinytl.quantize import quantize_frozen_weights

KB = 1024


def network(arch, method, classes):
    torch.manual_seed(0)
    net = MobileNetV2Backbone(arch)
    replace_classifier(net, classes)
    if uses_lite_residual(method):
        insert_lite_residuals(net, (arch.in_channels, arch.resolution, arch.resolution))
    configure_method(net, method)
    books = quantize_frozen_weights(net)
    return net.train(), books


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="proxyless_tiny")
    ap.add_argument("--classes", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    arch = backbone_config(args.arch)
    shape = (arch.in_channels, arch.resolution, arch.resolution)
    t0 = time.time()
    print(f"# TinyTL training memory, {args.arch} ({arch.resolution}x{arch.resolution}x{arch.in_channels}), {args.classes} classes; torch {torch.__version__}, {platform.machine()}")
    rows = {}
    for batch in (8, 1):
        print(f"\n## batch {batch}: saved for backward (KB)")
        print(f"| method | trainable params | analytic (paper) | analytic (exact) | measured, memory-saving | measured / exact | measured, plain PyTorch | plain / memory-saving |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for method in METHODS:
            net, books = network(arch, method, args.classes)
            paper = profile_training_memory(net, shape, batch, norm_rule="paper")
            exact = profile_training_memory(net, shape, batch, norm_rule="exact")
            ms = measure_training_step(net, shape, batch, memory_saving=True, books=books)
            plain = measure_training_step(net, shape, batch, memory_saving=False)
            rc = measure_training_step(net, shape, batch, memory_saving=True, books=books, recompute=True)
            rc_an = profile_training_memory(net, shape, batch, norm_rule="exact", recompute=True)
            rows[(batch, method)] = (paper, exact, ms, plain, rc, rc_an)
            print(
                f"| {method} | {paper.trainable_params} | {paper.saved_bytes / KB:.1f} | {exact.saved_bytes / KB:.1f} | {ms.saved_bytes / KB:.1f} | "
                f"{ms.saved_bytes / max(1, exact.saved_bytes):.3f} | {plain.saved_bytes / KB:.1f} | {plain.saved_bytes / max(1, ms.saved_bytes):.2f}x |"
            )
        print(f"\n## batch {batch}: training memory (KB)")
        print("| method | analytic paper (weights + peak act.) | analytic exact | measured memory-saving (params + saved + grads + Adam) | measured plain | peak RSS growth, memory-saving step | FT-Full / method (paper) | FT-Full / method (measured) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        full_p, _, full_m, _, _, _ = rows[(batch, "ft_full")]
        for method in METHODS:
            paper, exact, ms, plain, _, _ = rows[(batch, method)]
            rss = "n/a" if ms.rss_peak_delta_bytes is None else f"{ms.rss_peak_delta_bytes / KB:.0f}"
            print(
                f"| {method} | {paper.train_memory_bytes / KB:.1f} | {exact.train_memory_bytes / KB:.1f} | {ms.total_bytes / KB:.1f} | {plain.total_bytes / KB:.1f} | {rss} | "
                f"{full_p.train_memory_bytes / paper.train_memory_bytes:.1f}x | {full_m.total_bytes / ms.total_bytes:.1f}x |"
            )
        print(f"\n## batch {batch}: memory-saving mode with block recomputation (each mobile block keeps only its input)")
        print("| method | saved KB analytic (exact, recompute) | saved KB measured | measured / analytic | measured total KB (params + saved + grads + Adam) | analytic peak KB (weights + peak incl. one block run again) | FT-Full (memory-saving, no recompute) / method, measured total |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for method in METHODS:
            _, _, _, _, rc, rc_an = rows[(batch, method)]
            print(
                f"| {method} | {rc_an.saved_bytes / KB:.1f} | {rc.saved_bytes / KB:.1f} | {rc.saved_bytes / max(1, rc_an.saved_bytes):.3f} | {rc.total_bytes / KB:.1f} | "
                f"{rc_an.train_memory_bytes / KB:.1f} | {full_m.total_bytes / rc.total_bytes:.1f}x |"
            )
    print(f"\n(wall {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
