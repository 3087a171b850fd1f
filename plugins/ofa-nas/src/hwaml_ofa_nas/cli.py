"""``hwaml-ofa-nas``: the plugin's own commands.

    hwaml-ofa-nas lut build  [--arch tiny_digits] [--out lut.yaml]     measure a latency table on this machine
    hwaml-ofa-nas lut check  --lut lut.yaml [--n 50]                   LUT-predicted vs measured latency
    hwaml-ofa-nas train      [--arch tiny_digits] --out supernet.pt    progressive shrinking on a dataset
    hwaml-ofa-nas predictor train --supernet supernet.pt --out acc.pt  accuracy predictor + held-out RMSE
    hwaml-ofa-nas export     --supernet supernet.pt --config cfg.json --out DIR   ONNX + state dict
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def _json_arg(text: Optional[str], what: str) -> Any:
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() == ".json" and path.is_file():
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno}): {text!r}")


def _arch(args: argparse.Namespace):
    from .supernet import supernet_config

    return supernet_config(args.arch, _json_arg(args.arch_overrides, "--arch-overrides"))


def _add_arch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="tiny_digits", help="supernet preset (tiny_digits, test_tiny, mobilenetv3_large)")
    p.add_argument("--arch-overrides", default=None, help='JSON, e.g. \'{"width_mult": 1.2}\'')


def _table(rows: List[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# lut
# ---------------------------------------------------------------------------


def _subnet(arch: Any, cfg: Any):
    """An OFA sub-network and its input shape, as the ofa_digits evaluator's build_model makes it for costing."""
    import torch

    from .supernet import build_subnet

    r = int(cfg["resolution"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_subnet(arch, cfg).eval(), (arch.in_channels, r, r)


def cmd_lut_build(args: argparse.Namespace) -> int:
    from .latency_lut import LatencyLUT, MeasureConfig, default_lut_path
    from .supernet import OFAMobileNetV3

    arch = _arch(args)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    measure = MeasureConfig(threads=args.threads, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, calibrate=args.calibrate, statistic=args.statistic)
    lut = LatencyLUT.build(arch, engines, measure, progress=not args.quiet)
    out = Path(args.out) if args.out else default_lut_path(OFAMobileNetV3.space_for(arch), args.threads)
    lut.save(out)
    rows = []
    for e in engines:
        lo = lut.predict_model(*_subnet(arch, OFAMobileNetV3.extreme_config(arch, "min")), engine=e)
        hi = lut.predict_model(*_subnet(arch, OFAMobileNetV3.extreme_config(arch, "max")), engine=e)
        rows.append([e, lo, hi])
    print(f"wrote {out}: {len(lut)} layer shapes")
    print(_table(rows, ["engine", "smallest sub-network ms", "largest sub-network ms"]))
    return 0


def lut_check(
    lut_path: str,
    n: int,
    engines: Sequence[str],
    threads: int,
    warmup: int,
    repeats: int,
    seed: int,
    progress: bool = True,
    rounds: Any = None,
    arch: Any = None,
) -> Dict[str, Any]:
    """Predicted vs measured whole-network latency on ``n`` random sub-networks
    of ``arch`` (default: the supernet shape the table was built for), drawn
    with ``seed`` (so not the ones the table was calibrated on), timed
    interleaved with the table's statistic. Layers the table lacks are an error."""
    from hwaml.progress import progress as _progress

    from .latency_lut import LatencyLUT, make_runner, rounds_for, time_interleaved
    from .supernet import OFAMobileNetV3, supernet_config

    lut = LatencyLUT.load(lut_path)
    if arch is None:
        if "arch" not in lut.meta:
            raise SystemExit(f"{lut_path}: the table was not built for one supernet shape (no meta.arch); pass --arch")
        arch = lut.meta["arch"]
    arch = supernet_config(arch)
    space = OFAMobileNetV3.space_for(arch)
    rng = np.random.default_rng(seed)
    configs = [space.sample(rng) for _ in range(n)]
    nets = [_subnet(arch, cfg) for cfg in _progress(configs, total=len(configs), desc="prepare networks", enabled=progress)]
    runners, which = [], []
    for i, (model, shape) in enumerate(nets):
        for e in engines:
            runners.append(make_runner(model, (1,) + shape, e, threads))
            which.append((i, e))
    statistic = (lut.meta.get("measure") or {}).get("statistic", "min")
    measured = np.empty(len(runners))
    for e in engines:  # the table's timing settings, per engine
        idx = [j for j, (_, eng) in enumerate(which) if eng == e]
        measured[idx] = time_interleaved([runners[j] for j in idx], threads, warmup, repeats, rounds_for(e, repeats, rounds), statistic, seed, progress, f"measure networks ({e})")
    rows = []
    for (i, e), meas in zip(which, measured):
        pred = lut.predict_model(*nets[i], engine=e)
        rows.append({"subnet": i, "engine": e, "predicted_ms": pred, "measured_ms": float(meas), "error_pct": 100.0 * (pred - meas) / meas})
    summary = {}
    for e in engines:
        errs = np.abs([r["error_pct"] for r in rows if r["engine"] == e])
        summary[e] = {"n": int(len(errs)), "mean_abs_error_pct": float(errs.mean()), "p90_abs_error_pct": float(np.percentile(errs, 90)), "within_10pct": float(np.mean(errs <= 10.0))}
    return {"rows": rows, "summary": summary}


def cmd_lut_check(args: argparse.Namespace) -> int:
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    arch = _arch(args) if args.arch else None
    res = lut_check(args.lut, args.n, engines, args.threads, args.warmup, args.repeats, args.seed, not args.quiet, args.rounds, arch)
    print(_table([[s, v["n"], v["mean_abs_error_pct"], v["p90_abs_error_pct"], 100 * v["within_10pct"]] for s, v in res["summary"].items()], ["engine", "subnets", "mean |err| %", "p90 |err| %", "% within 10%"]))
    return 0


# ---------------------------------------------------------------------------
# train / predictor / export
# ---------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .progressive_shrinking import DIGITS_EPOCHS, DIGITS_LRS, train_supernet

    arch = _arch(args)
    data = load_dataset(args.dataset, args.data_root, max(arch.resolutions), args.val_fraction, args.seed)
    net, report = train_supernet(
        arch,
        data=data,
        epochs=_json_arg(args.epochs, "--epochs") or DIGITS_EPOCHS,
        lrs=_json_arg(args.lrs, "--lrs") or DIGITS_LRS,
        checkpoint=args.out,
        seed=args.seed,
        progress=not args.quiet,
        batch_size=args.batch_size,
    )
    rows = [[p.name, p.epochs, p.final_loss, p.val_accuracy.get("max", float("nan")), p.val_accuracy.get("min", float("nan"))] for p in report.phases]
    print(_table(rows, ["phase", "epochs", "final loss", "val acc (largest)", "val acc (smallest)"]))
    print(f"wrote {args.out}")
    return 0


def cmd_predictor_train(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .predictors import ArchEncoder, collect_accuracy_dataset, fit_accuracy_predictor
    from .progressive_shrinking import load_supernet

    net = load_supernet(args.supernet)
    data = load_dataset(args.dataset, args.data_root, max(net.arch.resolutions), args.val_fraction, args.seed)
    configs, accs = collect_accuracy_dataset(net, data, args.n, np.random.default_rng(args.seed), progress=not args.quiet)
    enc = ArchEncoder(net.space().meta["ofa"])
    model, report = fit_accuracy_predictor(enc.encode_configs(configs), accs, epochs=args.epochs, val_fraction=args.holdout, seed=args.seed)
    model.save(args.out, net.space().meta["ofa"], report)
    print(_table([[report.n_train, report.n_val, report.rmse_train, report.rmse_val, report.rmse_constant]], ["train subnets", "held-out", "RMSE train", "RMSE held-out", "RMSE constant"]))
    print(f"wrote {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .export import export_onnx, save_subnet
    from .progressive_shrinking import calibration_images, load_supernet, recalibrate_batchnorm

    net = load_supernet(args.supernet)
    cfg = net.set_active_subnet(_json_arg(args.config, "--config"))
    data = load_dataset(args.dataset, args.data_root, max(net.arch.resolutions), 0.2, args.seed)
    recalibrate_batchnorm(net, calibration_images(data.train, 500, args.seed), cfg["resolution"])
    sub = net.get_active_subnet().eval()
    out = Path(args.out)
    files = save_subnet(sub, out / "subnet")
    onnx = export_onnx(sub, out / "subnet.onnx")
    print(json.dumps({**files, "onnx": onnx["path"], "onnx_max_abs_diff": onnx["max_abs_diff"]}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hwaml-ofa-nas", description="Once-for-all NAS tools (hwaml plugin ofa-nas)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    lut = sub.add_parser("lut", help="latency look-up tables").add_subparsers(dest="lut_command", required=True)
    b = lut.add_parser("build", help="measure every block shape on this machine")
    _add_arch(b)
    b.add_argument("--out", default=None, help="YAML or JSON file (default: the per-host cache the host_cpu_lut backend reads)")
    b.add_argument("--engines", default="torch,onnxruntime")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--repeats", type=int, default=200, help="timed calls per layer / network")
    b.add_argument("--rounds", type=int, default=None, help="interleaved rounds the calls are spread over (default: repeats for torch, repeats/10 for onnxruntime)")
    b.add_argument("--calibrate", type=int, default=20, help="whole sub-networks timed to calibrate the sum (0: none)")
    b.add_argument("--statistic", default="min", choices=["min", "p10", "median"])
    b.set_defaults(func=cmd_lut_build)
    c = lut.add_parser("check", help="LUT-predicted vs measured whole-network latency")
    c.add_argument("--lut", required=True)
    c.add_argument("--arch", default=None, help="supernet preset whose sub-networks are checked (default: the one the table was built for)")
    c.add_argument("--arch-overrides", default=None, help="JSON, with --arch")
    c.add_argument("--n", type=int, default=50)
    c.add_argument("--engines", default="torch,onnxruntime")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--warmup", type=int, default=10)
    c.add_argument("--repeats", type=int, default=200)
    c.add_argument("--rounds", type=int, default=None, help="default: as lut build")
    c.add_argument("--seed", type=int, default=1, help="sub-networks are drawn with this seed (the table calibrates on seed 0)")
    c.set_defaults(func=cmd_lut_check)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", default="digits", choices=["digits", "imagefolder", "cifar10"])
        p.add_argument("--data-root", default=None)
        p.add_argument("--val-fraction", type=float, default=0.2)
        p.add_argument("--seed", type=int, default=0)

    t = sub.add_parser("train", help="train a supernet with progressive shrinking")
    _add_arch(t)
    data_args(t)
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", default=None, help='JSON, e.g. \'{"full": 15, "kernel": 8, "depth": [4, 8], "expand": [4, 8]}\'')
    t.add_argument("--lrs", default=None, help="JSON, same keys as --epochs")
    t.add_argument("--batch-size", type=int, default=64)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predictor", help="accuracy predictor").add_subparsers(dest="predictor_command", required=True)
    pt = pr.add_parser("train", help="measure sampled sub-networks and fit the MLP")
    pt.add_argument("--supernet", required=True)
    data_args(pt)
    pt.add_argument("--n", type=int, default=300, help="sub-networks to measure")
    pt.add_argument("--holdout", type=float, default=0.2)
    pt.add_argument("--epochs", type=int, default=300)
    pt.add_argument("--out", required=True)
    pt.set_defaults(func=cmd_predictor_train)

    e = sub.add_parser("export", help="extract a sub-network: state dict + config + ONNX")
    e.add_argument("--supernet", required=True)
    e.add_argument("--config", required=True, help="sub-network config as JSON text or a .json file")
    data_args(e)
    e.add_argument("--out", required=True)
    e.set_defaults(func=cmd_export)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
