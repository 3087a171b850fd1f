"""``hwaml-apq``: the predictor's training commands and the hardware table.

The reference released neither its predictor data nor how it trained the
predictors; here both are commands over hwaml runs (the samples are the
trials of ``experiment=apq_collect_fp32_digits`` / ``apq_collect_quant_digits``
runs, stored with their configurations in each run's ``trials.sqlite``)::

    hwaml run experiment=apq_collect_fp32_digits budget.trials=400 hydra.run.dir=runs/fp32
    hwaml run experiment=apq_collect_quant_digits budget.trials=100 hydra.run.dir=runs/quant
    hwaml-apq predictor fp --runs runs/fp32 --out fp.pt
    hwaml-apq predictor quant --runs runs/quant --init fp.pt --out quant.pt   # transfer
    hwaml-apq predictor quant --runs runs/quant --out scratch.pt              # from scratch
    hwaml-apq predictor compare --fp-runs runs/fp32 --quant-runs runs/quant --counts 10,20,40,60,80
    hwaml-apq lut --arch tiny_digits --out bitfusion_lut.json [--config hw.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["main", "load_samples", "sample_efficiency"]


def load_samples(run_dirs: Sequence[str], metric: str) -> Tuple[List[Dict[str, Any]], np.ndarray, Dict[str, Any]]:
    """(configs, values, space meta) of the finished trials of hwaml runs of an apq evaluator."""
    from hwaml.store import TrialStore

    configs: List[Dict[str, Any]] = []
    ys: List[float] = []
    meta: Dict[str, Any] = {}
    for d in run_dirs:
        path = Path(d) / "trials.sqlite"
        if not path.is_file():
            raise FileNotFoundError(f"{d}: no trials.sqlite (is it the directory of an hwaml run?)")
        with TrialStore(path) as store:
            for t in store.trials(["complete"]):
                v = t.value(metric)
                if math.isfinite(v):
                    configs.append(dict(t.config))
                    ys.append(v)
    if not configs:
        raise ValueError(f"runs {list(run_dirs)} hold no complete trial with a finite {metric!r}")
    return configs, np.asarray(ys, dtype=float), meta


def _encoder(arch: str, overrides: Optional[str], space_cfg: Optional[str]):
    from hwaml_ofa_nas.supernet import supernet_config

    from .space import JointEncoder, JointSpaceConfig, joint_space

    a = supernet_config(arch, json.loads(overrides) if overrides else None)
    sc = JointSpaceConfig(**json.loads(space_cfg)) if space_cfg else JointSpaceConfig()
    space = joint_space(a, sc)
    return space, JointEncoder(space.meta["apq"])


def sample_efficiency(
    enc: Any,
    fp: Tuple[List[Dict[str, Any]], np.ndarray],
    quant: Tuple[List[Dict[str, Any]], np.ndarray],
    counts: Sequence[int],
    seeds: Sequence[int],
    test_size: int,
    epochs: int,
    compare_restandardised: bool = False,
) -> List[Dict[str, Any]]:
    """RMSE and pairwise ranking accuracy on held-out quantized samples of the
    transferred and the from-scratch quantization-aware predictors, per count
    of quantized training samples and seed (``transfer``: the default recipe, which keeps
    the full-precision predictor's output scale); with ``compare_restandardised`` also the
    transfer re-standardised on the quantized targets (``how``: ``transfer_restandardised``)."""
    from .predictor import PredictorTraining, fit_fp_predictor, fit_quant_predictor, pairwise_ranking_accuracy, rmse

    t = PredictorTraining(epochs=epochs)
    Xf = enc.matrix(fp[0])
    Xq, yq = enc.matrix(quant[0]), quant[1]
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        perm = rng.permutation(len(yq))
        test, pool = perm[:test_size], perm[test_size:]
        if len(pool) < max(counts):
            raise ValueError(f"{len(yq)} quantized samples: {test_size} held out leaves {len(pool)}, fewer than the largest count {max(counts)}")
        fp_model = fit_fp_predictor(Xf[:, : enc.n_arch], fp[1], t, seed=seed)
        for n in counts:
            idx = pool[:n]
            A, Q = Xq[idx, : enc.n_arch], Xq[idx, enc.n_arch :]
            At, Qt = Xq[test, : enc.n_arch], Xq[test, enc.n_arch :]
            kinds = [("transfer", fp_model, False), ("scratch", None, False)] + ([("transfer_restandardised", fp_model, True)] if compare_restandardised else [])
            for how, init, restd in kinds:
                m = fit_quant_predictor(A, Q, yq[idx], init=init, training=t, seed=seed, restandardise=restd)
                p = m.predict(At, Qt)
                rows.append({"seed": seed, "samples": int(n), "how": how, "rmse": rmse(p, yq[test]), "rank_acc": pairwise_ranking_accuracy(p, yq[test])})
    return rows


def _cmd_predictor(args: argparse.Namespace) -> int:
    from .predictor import PredictorTraining, fit_fp_predictor, fit_quant_predictor, load_predictor, save_predictor

    space, enc = _encoder(args.arch, args.arch_overrides, args.space)
    t = PredictorTraining(epochs=args.epochs)
    if args.kind == "fp":
        configs, y, _ = load_samples(args.runs, args.metric or "accuracy_fp32")
        X = enc.matrix(configs)
        m = fit_fp_predictor(X[:, : enc.n_arch], y, t, seed=args.seed)
        save_predictor(m, args.out, {"samples": len(y), "runs": args.runs, "metric": args.metric or "accuracy_fp32"})
        print(f"full-precision predictor on {len(y)} samples -> {args.out}")
        return 0
    if args.kind == "quant":
        configs, y, _ = load_samples(args.runs, args.metric or "accuracy")
        X = enc.matrix(configs)
        init = load_predictor(args.init)[0] if args.init else None
        m = fit_quant_predictor(X[:, : enc.n_arch], X[:, enc.n_arch :], y, init=init, training=t, seed=args.seed)
        save_predictor(m, args.out, {"samples": len(y), "runs": args.runs, "transferred_from": args.init})
        print(f"quantization-aware predictor on {len(y)} samples ({'transferred from ' + args.init if args.init else 'from scratch'}) -> {args.out}")
        return 0
    fp = load_samples(args.fp_runs, "accuracy_fp32")[:2]
    quant = load_samples(args.quant_runs, "accuracy")[:2]
    counts = [int(c) for c in args.counts.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = sample_efficiency(enc, fp, quant, counts, seeds, args.test_size, args.epochs)
    print(format_efficiency(rows, len(fp[1]), args.test_size))
    return 0


def format_efficiency(rows: List[Dict[str, Any]], n_fp: int, test_size: int) -> str:
    hows = [h for h in ("transfer", "scratch", "transfer_restandardised", "transfer_fp_scale") if any(r["how"] == h for r in rows)]
    names = {"transfer": "transfer", "scratch": "scratch", "transfer_restandardised": "transfer, re-standardised", "transfer_fp_scale": "transfer, fp32 scale"}
    head = " | ".join([f"RMSE {names[h]}" for h in hows] + [f"ranking acc. {names[h]}" for h in hows])
    lines = [
        f"quantization-aware predictor on {test_size} held-out quantized samples (fp32 predictor: {n_fp} samples); mean over seeds",
        "",
        f"| quantized samples | {head} |",
        "| ---: |" + " ---: |" * (2 * len(hows)),
    ]
    for n in sorted({r["samples"] for r in rows}):
        def mean(how, key):
            v = [r[key] for r in rows if r["samples"] == n and r["how"] == how]
            return float(np.nanmean(v))

        cells = [f"{mean(h, 'rmse'):.4f}" for h in hows] + [f"{mean(h, 'rank_acc'):.3f}" for h in hows]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cmd_lut(args: argparse.Namespace) -> int:
    from hwaml_ofa_nas.supernet import supernet_config

    from .hardware import BitFusionConfig, LayerShape, build_lut
    from .space import JointSpaceConfig, joint_space

    hw = BitFusionConfig(**json.loads(Path(args.config).read_text())) if args.config else BitFusionConfig()
    arch = supernet_config(args.arch, json.loads(args.arch_overrides) if args.arch_overrides else None)
    space = joint_space(arch, JointSpaceConfig())
    meta = space.meta["apq"]
    shapes = []
    from hwaml_ofa_nas.supernet import conv_out

    size = conv_out(meta["resolution"], 2)
    cin = arch.scaled(arch.first_block_width)
    for st, stage, width in zip(meta["stages"], arch.stages, arch.stage_widths):
        for j, widths in enumerate([st["first_widths"]] + [st["rest_widths"]] * (max(meta["depth_choices"]) - 1)):
            stride = stage.stride if j == 0 else 1
            c_in = cin if j == 0 else width
            for mid in widths:
                shapes.append(LayerShape(c_in, mid, size, 1, 1, 0, 1, 8, 8))
                for k in meta["kernel_choices"]:
                    shapes.append(LayerShape(mid, mid, size, k, stride, k // 2, mid, 8, 8))
                shapes.append(LayerShape(mid, width, conv_out(size, stride), 1, 1, 0, 1, 8, 8))
        size = conv_out(size, stage.stride)
        cin = width
    bits = meta["bit_choices"]
    table = build_lut(shapes, hw, [(w, a) for w in bits for a in bits], args.out)
    print(f"{len(table)} entries ({len(set(shapes))} layer shapes x {len(bits) ** 2} bit pairs) -> {args.out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hwaml-apq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predictor", help="train or compare accuracy predictors on the trials of hwaml runs")
    pr.add_argument("kind", choices=["fp", "quant", "compare"])
    pr.add_argument("--runs", nargs="+", default=[])
    pr.add_argument("--fp-runs", nargs="+", default=[])
    pr.add_argument("--quant-runs", nargs="+", default=[])
    pr.add_argument("--init", default=None, help="full-precision predictor to transfer from (quant)")
    pr.add_argument("--out", default="predictor.pt")
    pr.add_argument("--metric", default=None)
    pr.add_argument("--arch", default="tiny_digits")
    pr.add_argument("--arch-overrides", default=None, help="JSON")
    pr.add_argument("--space", default=None, help="JSON of JointSpaceConfig fields")
    pr.add_argument("--epochs", type=int, default=300)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--counts", default="10,20,40,60,80")
    pr.add_argument("--seeds", default="0,1,2")
    pr.add_argument("--test-size", type=int, default=40)
    lut = sub.add_parser("lut", help="the BitFusion look-up table of a supernet's layer shapes, in the reference's format")
    lut.add_argument("--arch", default="tiny_digits")
    lut.add_argument("--arch-overrides", default=None, help="JSON")
    lut.add_argument("--config", default=None, help="JSON file of BitFusionConfig fields (another accelerator)")
    lut.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.command == "predictor":
        if args.kind in ("fp", "quant") and not args.runs:
            p.error("predictor fp/quant needs --runs RUN_DIR ...")
        if args.kind == "compare" and not (args.fp_runs and args.quant_runs):
            p.error("predictor compare needs --fp-runs and --quant-runs")
        return _cmd_predictor(args)
    return _cmd_lut(args)


if __name__ == "__main__":
    sys.exit(main())
