"""Fit the code-size part of the Flash estimate to linked firmware.

    python benchmarks/tinyengine/calibrate_flash.py [--nets 6] [--seed 2000] [--out PATH]

Calibration networks (held out from bench_latency.py's seed-0 tinynas sample):
tinynas sub-networks of S(0.35, 96) drawn with --seed, MCUNet-like digits networks
and a MobileNetV2-0.35. Each is generated, linked for the STM32F412 (Cortex-M4,
-O2) and its model Flash measured (hwaml_tinyengine.firmware.model_flash_bytes:
.text + .rodata less the harness and startup); code = measured - the exactly
counted constants (weights, per-channel parameters, window tables); the code
coefficients of hwaml_tinyengine.flash.code_features are fitted by non-negative
least squares and written to hwaml_tinyengine/data/flash_fit.json with the rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

import hwaml_tinyengine
from hwaml_tinyengine.codegen import generate_project
from hwaml_tinyengine.device import load_profile
from hwaml_tinyengine.firmware import build_firmware, model_flash_bytes
from hwaml_tinyengine.flash import code_features, flash_breakdown
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.memory_planner import plan_memory
from hwaml_tinyengine.models import mcunet_from_config, mcunet_space, mobilenetv2_like
from hwaml_tinyengine.quantize import quantize_graph, quantize_input

from fw_common import calibrate_bn, tinynas_networks


def networks(n, seed):
    for i, (_, m) in enumerate(tinynas_networks(n, seed)):
        yield f"tinynas s{seed} #{i}", m
    rng = np.random.default_rng(seed)
    space = mcunet_space()
    for i in range(n):
        yield f"mcunet-digits #{i}", mcunet_from_config(space.sample(rng))
    yield "mobilenetv2-0.35 r96", mobilenetv2_like(0.35, 96, num_classes=10)


def linked(model, prof):
    shape = tuple(model.input_shape)
    model = calibrate_bn(model, shape)
    g = import_model(model, shape)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    qg = quantize_graph(g, x)
    plan = plan_memory(qg, patch=True)
    with tempfile.TemporaryDirectory() as d:
        proj = generate_project(qg, plan, Path(d), quantize_input(qg, x[:1]), profile=prof)
        build_firmware(proj.path, "arm")
        return qg, plan, model_flash_bytes(proj.path / "firmware.elf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", type=int, default=6)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--out", default=str(Path(hwaml_tinyengine.__file__).parent / "data" / "flash_fit.json"))
    args = ap.parse_args()
    prof = load_profile("stm32f412", {"flash_kb": 4096, "sram_kb": 1024})
    rows = []
    for name, model in networks(args.nets, args.seed):
        qg, plan, fl = linked(model, prof)
        b = flash_breakdown(qg, plan.patch)
        consts = b["weights"] + b["per_channel_params"] + b["window_tables"]
        rows.append({"net": name, "features": code_features(qg), "model_bytes": fl["model"], "constants": consts, "code": fl["model"] - consts})
        print(f"{name:<26} model {fl['model']:>9} B, constants {consts:>9} B, code {fl['model'] - consts:>7} B", flush=True)
    names = sorted({k for r in rows for k in r["features"]})
    A = np.array([[r["features"].get(k, 0.0) for k in names] for r in rows])
    y = np.array([r["code"] for r in rows], dtype=float)
    coef, _ = nnls(A, y)
    fit = {k: float(v) for k, v in zip(names, coef)}
    pred = A @ coef
    errs = [abs(p + r["constants"] - r["model_bytes"]) / r["model_bytes"] for p, r in zip(pred, rows)]
    print("code bytes: " + ", ".join(f"{k} {v:.1f}" for k, v in fit.items()))
    print(f"total Flash error on the calibration set: max {100 * max(errs):.2f}%, mean {100 * np.mean(errs):.2f}%")
    Path(args.out).write_text(json.dumps({"source": "benchmarks/tinyengine/calibrate_flash.py", "args": vars(args), "coefficients": fit, "rows": rows}, indent=0, sort_keys=True))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
