"""Instructions per MAC of the generated firmware on Cortex-M4 in QEMU, whole
network and per op type, on MobileNetV2-0.35 at 96x96x3 and the MCUNet-like net.

    python benchmarks/tinyengine/bench_firmware.py [--profile stm32f412] [--vectors 2] [--no-patch]

Each model is quantised (random calibration images: instruction counts do not
depend on the weights' values), planned (patch-based inference as deploy does),
cross-compiled with arm-none-eabi-gcc for the profile's core and run in
qemu-system-arm -icount shift=0 (one instruction per virtual ns, SysTick at 25 MHz:
40 instructions per tick); per-layer counts come from the profiling build
(-DTE_PROFILE). Outputs are checked bit for bit against the Python int8 reference.
Columns: the DSP build (SMLAD/SXTB16 kernels, the default) and the portable C path
of the same kernels compiled for the same core (-DTE_PORTABLE).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from hwaml_tinyengine.codegen import generate_project
from hwaml_tinyengine.device import load_profile
from hwaml_tinyengine.firmware import profile_layers
from hwaml_tinyengine.ir import import_model
from hwaml_tinyengine.memory_planner import plan_memory
from hwaml_tinyengine.models import mcunet_imagenet_like, mobilenetv2_like
from hwaml_tinyengine.quantize import quantize_graph, quantize_input

from fw_common import calibrate_bn


def models():
    yield "mobilenetv2-0.35 r96", mobilenetv2_like(0.35, 96)
    yield "mcunet-like w0.35 r96", mcunet_imagenet_like(0.35, 96)


def per_op(rows):
    acc = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        op = r["op"]
        if op == "dwconv":
            op = f"dwconv{r['node']['kernel']}x{r['node']['kernel']}"
        if op == "conv":
            op = f"conv{r['node']['kernel']}x{r['node']['kernel']}"
        acc[op][0] += r["instructions"]
        acc[op][1] += r["macs"]
    return {k: v[0] / v[1] for k, v in acc.items() if v[1] > 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="stm32f412")
    ap.add_argument("--vectors", type=int, default=2)
    ap.add_argument("--no-patch", action="store_true", help="layer-by-layer plan (no patch-based inference, no recomputation)")
    ap.add_argument("--flash-kb", type=float, default=4096, help="Flash of the profile (1000-class heads need more than 1 MB; QEMU has 4 MB)")
    args = ap.parse_args()
    prof = load_profile(args.profile, {"flash_kb": args.flash_kb})
    print(f"profile {prof.device} ({prof.core}); instructions per MAC (patch recomputation included in the MACs)" + ("; layer-by-layer plan" if args.no_patch else ""))
    for name, model in models():
        torch.manual_seed(0)
        model = calibrate_bn(model, model.input_shape)
        g = import_model(model, model.input_shape)
        x = torch.randn(max(8, args.vectors), *model.input_shape, generator=torch.Generator().manual_seed(0))
        qg = quantize_graph(g, x)
        plan = plan_memory(qg, patch=not args.no_patch)
        res = {}
        for variant, extra in (("dsp", ""), ("portable", "-DTE_PORTABLE")):
            with tempfile.TemporaryDirectory() as d:
                proj = generate_project(qg, plan, Path(d), quantize_input(qg, x[: args.vectors]), profile=prof)
                if extra:
                    mk = proj.path / "firmware.mk"
                    mk.write_text(mk.read_text() + f"ARM_CPU += {extra}\n")
                t0 = time.perf_counter()
                res[variant] = profile_layers(proj, plan)
                res[variant]["s"] = time.perf_counter() - t0
        macs = sum(r["macs"] for r in res["dsp"]["layers"])
        print(f"\n{name}: {plan.base_macs / 1e6:.2f} MMACs ({macs / 1e6:.2f} with recomputation), arena {plan.arena_bytes} B, outputs bit-exact")
        print(f"  {'':<12} {'dsp':>8} {'portable':>9}")
        print(f"  {'whole net':<12} {res['dsp']['instructions'] / macs:8.2f} {res['portable']['instructions'] / macs:9.2f}")
        a, b = per_op(res["dsp"]["layers"]), per_op(res["portable"]["layers"])
        for op in sorted(a):
            print(f"  {op:<12} {a[op]:8.2f} {b[op]:9.2f}")
        print(f"  stack {res['dsp']['stack']} B; QEMU+build {res['dsp']['s']:.1f} s / {res['portable']['s']:.1f} s")


if __name__ == "__main__":
    main()
