"""AMC's least-squares reconstruction on pruned sub-networks of the trained supernet.

For sub-networks of APQ's joint space (``evaluator=apq_digits``: ofa-nas's
tiny_digits supernet trained by progressive shrinking on digits, cached by
ofa-nas), with every block at its smallest middle width (4x, the strongest
pruning of the space) and kernels/depths drawn at random: full-precision
validation accuracy with the first (magnitude-sorted) channels kept as they
are, and after refitting each pruned block's point-wise projection to the
unpruned network's outputs on 256 calibration images (``evaluator.reconstruct=true``),
both with batch norm recalibrated and before any fine-tuning; the unpruned
network of the same kernels and depths for reference.

    python benchmarks/apq/amc_reconstruction.py [--n 10] [--seed 300]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics

import numpy as np
import torch

from hwaml_apq.evaluator import APQEvaluator
from hwaml_apq.space import widest_config
from hwaml_ofa_nas.progressive_shrinking import evaluate_accuracy


def narrowest(space, cfg):
    out = copy.deepcopy(cfg)
    for st in space.meta["apq"]["stages"]:
        s = out[st["name"]]
        s["first"]["width"] = min(st["first_widths"])
        for b in s["rest"]:
            b["width"] = min(st["rest_widths"])
    return space.validate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hydra.utils import instantiate

    from hwaml.testing import compose_config

    def make(reconstruct: bool) -> APQEvaluator:  # evaluator=apq_digits as shipped (its cached supernet)
        cfg = compose_config(["evaluator=apq_digits", "evaluator.mode=fp32", "evaluator.progress=false", f"evaluator.reconstruct={str(reconstruct).lower()}"])
        return instantiate(cfg.evaluator, _convert_="all")

    plain, refit = make(False), make(True)
    space = plain.search_space(ctx=None)
    refit.search_space(ctx=None)
    val = plain.data().val
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.n):
        cfg = narrowest(space, space.sample(rng))
        acc = lambda ev, c: evaluate_accuracy(ev.subnet(c), val, plain.resolution, 256)
        sub = refit.subnet(cfg)
        err = statistics.mean(r["error_after"] for r in sub.reconstruction) if sub.reconstruction else float("nan")
        err0 = statistics.mean(r["error_before"] for r in sub.reconstruction) if sub.reconstruction else float("nan")
        rows.append((acc(plain, widest_config(space, cfg)), acc(plain, cfg), evaluate_accuracy(sub, val, plain.resolution, 256), err0, err))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; apq_digits (tiny_digits supernet, digits, {len(val)} validation images); {args.n} sub-networks, seed {args.seed}")
    print()
    print(f"{'#':>3}{'unpruned':>10}{'pruned':>9}{'+ LS refit':>12}{'block fit error before':>24}{'after':>8}")
    for i, (w, p, r, e0, e1) in enumerate(rows):
        print(f"{i:>3}{w:>10.4f}{p:>9.4f}{r:>12.4f}{e0:>24.3f}{e1:>8.3f}")
    m = [statistics.mean(c) for c in zip(*rows)]
    print(f"{'mean':>3}{m[0]:>10.4f}{m[1]:>9.4f}{m[2]:>12.4f}{m[3]:>24.3f}{m[4]:>8.3f}")
    print(f"\nreconstruction better on {sum(r > p for _, p, r, _, _ in rows)} of {len(rows)}, worse on {sum(r < p for _, p, r, _, _ in rows)}")


if __name__ == "__main__":
    main()
