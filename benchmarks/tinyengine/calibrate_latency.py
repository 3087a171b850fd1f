"""Fit the latency model (instructions per layer) to QEMU instruction counts.

    python benchmarks/tinyengine/calibrate_latency.py [--nets 10] [--seed 1000] [--out PATH]

Calibration networks (held out from the evaluation in bench_latency.py, which
samples the tinynas space with seed 0): tinynas sub-networks of S(0.35, 96)
sampled with --seed, MCUNet-like digits networks of hwaml_tinyengine's space,
and a MobileNetV2-0.35. Each is cross-compiled with the profiling harness
(per-layer SysTick marks), run in qemu-system-arm -icount shift=0 on Cortex-M4
(mps2-an386) and Cortex-M7 (mps2-an500); the per-layer counts and their
features (hwaml_tinyengine.latency.layer_features) are fitted per op type by
non-negative least squares, and coefficients + measured rows are written to
hwaml_tinyengine/data/latency_fit.json (the shipped fit).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import hwaml_tinyengine
from hwaml_tinyengine.device import load_profile
from hwaml_tinyengine.latency import fit_coefficients, plan_features
from hwaml_tinyengine.models import mcunet_from_config, mcunet_space, mobilenetv2_like

from fw_common import measure, tinynas_networks

CORES = {"cortex-m4": "stm32f412", "cortex-m7": "stm32f746"}


def networks(n: int, seed: int):
    for i, (cfg, m) in enumerate(tinynas_networks(n, seed)):
        yield f"tinynas s{seed} #{i}", m
    space = mcunet_space()
    rng = np.random.default_rng(seed)
    for i in range(max(2, n // 2)):
        cfg = space.sample(rng)
        yield f"mcunet-digits #{i} r{cfg['resolution']}", mcunet_from_config(cfg)
    yield "mobilenetv2-0.35 r96", mobilenetv2_like(0.35, 96, num_classes=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", type=int, default=10, help="tinynas networks (plus half as many digits networks and a MobileNetV2)")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--cores", nargs="+", default=list(CORES), choices=list(CORES), help="cores to fit (the others keep their entry in --out)")
    ap.add_argument("--out", default=str(Path(hwaml_tinyengine.__file__).parent / "data" / "latency_fit.json"))
    args = ap.parse_args()
    result = {"source": "benchmarks/tinyengine/calibrate_latency.py", "args": vars(args), "cores": {}}
    if Path(args.out).exists():
        result["cores"] = json.loads(Path(args.out).read_text()).get("cores", {})
    for core in args.cores:
        prof_name = CORES[core]
        prof = load_profile(prof_name, {"flash_kb": 4096, "sram_kb": 1024})
        rows, totals = [], []
        t0 = time.perf_counter()
        for name, model in networks(args.nets, args.seed):
            m = measure(model, prof, layers=True)
            prof_rows = m["profile"]["layers"]
            feats = plan_features(m["plan"])
            for (layer, op, f), r in zip(feats, prof_rows):
                rows.append({"net": name, "layer": layer, "op": op, "features": f, "instructions": r["instructions"]})
            totals.append({"net": name, "instructions": m["instructions"], "layers_sum": sum(r["instructions"] for r in prof_rows)})
            print(f"{core} {name:<28} {m['instructions']:>12.0f} instructions, {len(prof_rows)} layers", flush=True)
        coef = fit_coefficients(rows)
        # what the plain firmware runs beyond the layers (the call sequence), per inference
        per_inf = float(np.median([t["instructions"] - t["layers_sum"] for t in totals]))
        result["cores"][core] = {"coefficients": coef, "per_inference": max(0.0, per_inf), "rows": rows, "totals": totals,
                                 "fit_s": time.perf_counter() - t0, "nets": args.nets, "seed": args.seed}
        errs = [abs(sum(_pred(coef, r) for r in rows if r["net"] == t["net"]) + max(0.0, per_inf) - t["instructions"]) / t["instructions"] for t in totals]
        print(f"{core}: fitted on {len(rows)} layers of {len(totals)} networks; whole-network error on the calibration set: max {100 * max(errs):.1f}%, mean {100 * np.mean(errs):.1f}%")
        for kind, c in coef.items():
            print(f"  {kind:<7} " + ", ".join(f"{k} {v:.3f}" for k, v in c.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=0, sort_keys=True))
    print(f"wrote {args.out}")


def _pred(coef, row):
    from hwaml_tinyengine.latency import _kind

    return sum(coef.get(_kind(row["op"]), {}).get(k, 0.0) * v for k, v in row["features"].items())


if __name__ == "__main__":
    main()
