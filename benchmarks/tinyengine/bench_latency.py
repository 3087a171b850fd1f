"""Predicted vs QEMU-measured instructions, and estimated vs linked Flash, on
networks sampled from the tinynas space.

    python benchmarks/tinyengine/bench_latency.py [--n 20] [--seed 0] [--profile stm32f412]

The networks are tinynas sub-networks of S(0.35, 96) (MCUNet's ImageNet backbone,
1000 classes), drawn with --seed (the calibration scripts use seeds 1000 and
2000). Each is quantised, planned (patch-based inference), cross-compiled for the
profile's core and run in qemu-system-arm -icount shift=0 (bit-exact check);
"measured" is the plain firmware's instructions per inference, "predicted" the
fitted model (hwaml_tinyengine.latency), "Flash est." the estimate used in search
(MemoryPlan.flash_bytes) against the model's .text + .rodata in the linked ELF.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hwaml_tinyengine.device import estimate_latency_ms, load_profile
from hwaml_tinyengine.latency import predict_instructions

from fw_common import measure, tinynas_networks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default="stm32f412")
    args = ap.parse_args()
    prof = load_profile(args.profile, {"flash_kb": 4096, "sram_kb": 1024})
    head = f"{'#':>2} {'MMACs':>6} {'measured Minsn':>14} {'predicted':>9} {'error':>7} {'insn/MAC':>8} {'Flash est. KB':>13} {'linked KB':>9} {'error':>7} {'stack B':>7} {'lat ms':>7}"
    print(f"profile {prof.device} ({prof.core}), cycles/instruction {prof.cycles_per_instruction}, {prof.clock_mhz:.0f} MHz")
    lat_err, fl_err = [], []
    t0 = time.perf_counter()
    done = []
    for i, (_, model) in enumerate(tinynas_networks(args.n, args.seed)):
        m = measure(model, prof)
        done.append(m)
        print(f"measured #{i}: {m['instructions']:.0f} instructions ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(head)
    print("-" * len(head))
    for i, m in enumerate(done):
        plan = m["plan"]
        pred = predict_instructions(plan, prof.core)
        e = (pred - m["instructions"]) / m["instructions"]
        fe = (plan.flash_bytes - m["model_flash"]["model"]) / m["model_flash"]["model"]
        lat_err.append(e)
        fl_err.append(fe)
        print(
            f"{i:>2} {plan.base_macs / 1e6:6.1f} {m['instructions'] / 1e6:14.2f} {pred / 1e6:9.2f} {100 * e:+6.1f}% {m['instructions'] / plan.base_macs:8.2f} "
            f"{plan.flash_bytes / 1024:13.1f} {m['model_flash']['model'] / 1024:9.1f} {100 * fe:+6.2f}% {m['stack']:7d} {estimate_latency_ms(plan, prof):7.1f}"
        )
    a, b = np.abs(lat_err), np.abs(fl_err)
    print("-" * len(head))
    print(f"instructions: |error| max {100 * a.max():.1f}%, mean {100 * a.mean():.1f}%, within 10% on {int((a <= 0.10).sum())}/{len(a)}")
    print(f"Flash: |error| max {100 * b.max():.2f}%, mean {100 * b.mean():.2f}%, within 3% on {int((b <= 0.03).sum())}/{len(b)}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
