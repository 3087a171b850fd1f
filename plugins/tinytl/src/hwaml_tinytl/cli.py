"""``hwaml-tinytl``: pretrain the backbone (cached) and print memory profiles.

    hwaml-tinytl pretrain [--arch proxyless_tiny] [--epochs 8] [--n-train 2000] [--no-lite-residual] [--out PATH]
    hwaml-tinytl memory   [--arch proxyless_tiny] [--batch 8] [--target-classes 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .backbone import MobileNetV2Backbone, backbone_config, replace_classifier
from .data import load_target
from .lite_residual import insert_lite_residuals
from .measure import measure_training_step
from .memory import profile_training_memory
from .methods import METHODS, configure_method, uses_lite_residual
from .quantize import quantize_frozen_weights
from .training import PretrainConfig, pretrain_backbone, pretrained_path


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)  # on a shared machine more threads than free cores is far slower than one
    arch = backbone_config(args.arch)
    cfg = PretrainConfig(source=args.source, n_train=args.n_train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, checkpoint=args.out, lite_residual=not args.no_lite_residual)
    out = pretrained_path(arch, cfg, args.seed)
    if out.is_file() and not args.force:
        print(f"{out} exists (use --force to pretrain again)")
        return 0
    src = load_target(cfg.source, arch.resolution, arch.in_channels, cfg.n_train, cfg.n_val, cfg.n_val, args.seed, args.data_root)
    pretrain_backbone(arch, src, cfg, args.seed, out=out)
    print(json.dumps(json.loads(out.with_suffix(".json").read_text()), indent=2))
    print(f"wrote {out}")
    return 0


def _memory(args: argparse.Namespace) -> int:
    arch = backbone_config(args.arch)
    shape = (arch.in_channels, arch.resolution, arch.resolution)
    print(f"{'method':<14}{'analytic paper KB':>18}{'analytic exact KB':>18}{'measured KB':>14}{'plain torch KB':>16}   (saved for backward, batch {args.batch})")
    for method in METHODS:
        net = MobileNetV2Backbone(arch)
        replace_classifier(net, args.target_classes)
        if uses_lite_residual(method):
            insert_lite_residuals(net, shape)
        configure_method(net, method)
        books = quantize_frozen_weights(net)
        net.train()
        paper = profile_training_memory(net, shape, args.batch, norm_rule="paper").saved_bytes
        exact = profile_training_memory(net, shape, args.batch, norm_rule="exact").saved_bytes
        ms = measure_training_step(net, shape, args.batch, memory_saving=True, books=books).saved_bytes
        plain = measure_training_step(net, shape, args.batch, memory_saving=False).saved_bytes
        print(f"{method:<14}{paper / 1024:>18.1f}{exact / 1024:>18.1f}{ms / 1024:>14.1f}{plain / 1024:>16.1f}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hwaml-tinytl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("pretrain", help="pretrain the backbone on the source task and cache it")
    pre.add_argument("--arch", default="proxyless_tiny")
    pre.add_argument("--source", default="fashion_0_4")
    pre.add_argument("--n-train", type=int, default=PretrainConfig.n_train)
    pre.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    pre.add_argument("--lr", type=float, default=PretrainConfig.lr)
    pre.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--data-root", default=None, help="Fashion-MNIST IDX folder")
    pre.add_argument("--out", default=None, help="weights file (default: the cache path the evaluator looks up)")
    pre.add_argument("--force", action="store_true")
    pre.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    pre.add_argument("--no-lite-residual", action="store_true", help="pretrain the backbone alone (pretrain.lite_residual: false)")
    mem = sub.add_parser("memory", help="analytic and measured saved-for-backward bytes of the six methods")
    mem.add_argument("--arch", default="proxyless_tiny")
    mem.add_argument("--batch", type=int, default=8)
    mem.add_argument("--target-classes", type=int, default=5)
    args = p.parse_args(argv)
    return _pretrain(args) if args.cmd == "pretrain" else _memory(args)


if __name__ == "__main__":
    sys.exit(main())
