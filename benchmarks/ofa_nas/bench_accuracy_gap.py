"""Progressive shrinking vs training from scratch on the default data (digits).

Trains the tiny_digits supernet with progressive shrinking (the published phase
order, knowledge distillation, the default digits schedule), then for N
sub-networks (the largest, the smallest and random ones) compares the
accuracy of the sub-network taken from the supernet (batch norm recalibrated)
with the same architecture trained from scratch for the same total number of
epochs. Goal: average gap within 1.5 points over at least 8 sub-networks.

    python benchmarks/ofa_nas/bench_accuracy_gap.py [--subnets 8] [--seed 0]
    python benchmarks/ofa_nas/bench_accuracy_gap.py --dataset fashion_mnist --train-images 6000
      (Fashion-MNIST from Debian's dataset-fashion-mnist with the ofa_fashion schedule)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from hwaml_ofa_nas.data import load_dataset
from hwaml_ofa_nas.predictors import count_macs
from hwaml_ofa_nas.progressive_shrinking import (
    DIGITS_EPOCHS,
    DIGITS_LRS,
    calibration_images,
    evaluate_accuracy,
    recalibrate_batchnorm,
    train_static,
    train_supernet,
)
from hwaml_ofa_nas.supernet import OFAMobileNetV3, build_subnet


def total_epochs(epochs) -> int:
    return sum(sum(v) if isinstance(v, (list, tuple)) else int(v) for v in epochs.values())


def describe(cfg) -> str:
    depths = "".join(str(len(v)) for k, v in cfg.items() if k != "resolution")
    ks = sum(b["kernel"] for k, v in cfg.items() if k != "resolution" for b in v) / sum(len(v) for k, v in cfg.items() if k != "resolution")
    es = sum(b["expand"] for k, v in cfg.items() if k != "resolution" for b in v) / sum(len(v) for k, v in cfg.items() if k != "resolution")
    return f"r{cfg['resolution']} d{depths} k{ks:.1f} e{es:.1f}"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--subnets", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scratch-lr", type=float, default=DIGITS_LRS["full"])
    p.add_argument("--dataset", default="digits", choices=["digits", "fashion_mnist"])
    p.add_argument("--train-images", type=int, default=None, help="fashion_mnist: training images (default: all 54,000)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.dataset == "digits":
        data = load_dataset("digits", None, 32, 0.2, args.seed)
        schedule = dict(epochs=DIGITS_EPOCHS, lrs=DIGITS_LRS)
    else:
        data = load_dataset("fashion_mnist", None, 32, 0.1, args.seed, args.train_images)
        # the schedule of conf/evaluator/ofa_fashion.yaml
        schedule = dict(epochs={"full": 8, "kernel": 3, "depth": [2, 3], "expand": [2, 3]}, lrs=DIGITS_LRS, batch_size=128)
    t0 = time.perf_counter()
    net, report = train_supernet("tiny_digits", data=data, seed=args.seed, progress=False, **schedule)
    ps_s = time.perf_counter() - t0
    epochs = total_epochs(schedule["epochs"])
    rng = np.random.default_rng(args.seed + 1)
    configs = [net.max_config(), net.min_config()] + [net.space().sample(rng) for _ in range(args.subnets - 2)]
    calib = calibration_images(data.train, 500, args.seed)
    rows = []
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs):
        net.set_active_subnet(cfg)
        recalibrate_batchnorm(net, calib, cfg["resolution"])
        ps_acc = evaluate_accuracy(net, data.val, cfg["resolution"])
        torch.manual_seed(args.seed + 100 + i)
        scratch = build_subnet(net.arch, cfg)
        train_static(scratch, data, epochs, args.scratch_lr, cfg["resolution"], seed=args.seed + i)
        scratch_acc = evaluate_accuracy(scratch, data.val, cfg["resolution"])
        rows.append((describe(cfg), count_macs(net.arch, cfg) / 1e6, 100 * ps_acc, 100 * scratch_acc))
        print(f"  {rows[-1][0]}: PS {100 * ps_acc:.2f}  scratch {100 * scratch_acc:.2f}", flush=True)
    scratch_s = time.perf_counter() - t0
    print()
    print(f"tiny_digits on {args.dataset} (32x32, {len(data.train)} train / {len(data.val)} val), seed {args.seed}; "
          f"progressive shrinking {epochs} epochs in total ({ps_s:.0f}s); from scratch {epochs} epochs per sub-network ({scratch_s:.0f}s for all)")
    print("phases: " + ", ".join(f"{p.name} ({p.epochs} ep, largest {100 * p.val_accuracy['max']:.1f}%, smallest {100 * p.val_accuracy['min']:.1f}%)" for p in report.phases))
    print("| sub-network (res, depths, mean kernel, mean expand) | MMACs | OFA (PS) top-1 % | from scratch top-1 % | gap (scratch - PS) |")
    print("|---|---|---|---|---|")
    for name, macs, ps, sc in rows:
        print(f"| {name} | {macs:.2f} | {ps:.2f} | {sc:.2f} | {sc - ps:+.2f} |")
    gaps = np.array([sc - ps for _, _, ps, sc in rows])
    print(f"| mean over {len(rows)} | | {np.mean([r[2] for r in rows]):.2f} | {np.mean([r[3] for r in rows]):.2f} | {gaps.mean():+.2f} |")


if __name__ == "__main__":
    main()
