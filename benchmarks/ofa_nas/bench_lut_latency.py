"""Latency look-up table: predicted vs measured whole-network latency on this CPU.

Builds the table for the tiny_digits supernet (every layer shape of its space, keyed
by the sub-networks' layers as the host_cpu_lut backend keys them, torch eager
and onnxruntime, 1 thread, 200 timed calls per entry spread over interleaved
rounds (torch: 200 rounds of 1 call, onnxruntime: 20 rounds of 10), minimum kept; whole-network calibration scale*sum+offset fitted on 20
sub-networks drawn with seed 0 and timed interleaved with the entries), then
measures 50 *other* random sub-networks (seed 1) end to end, interleaved, and
reports the prediction error. Goal: within 10% for 90% of them.

    python benchmarks/ofa_nas/bench_lut_latency.py [--arch tiny_digits] [--n 50] [--repeats 200] [--rounds R] [--calibrate 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from hwaml_ofa_nas.cli import lut_check
from hwaml_ofa_nas.latency_lut import LatencyLUT, MeasureConfig
from hwaml_ofa_nas.supernet import supernet_config


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="tiny_digits")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--rounds", type=int, default=None, help="default: repeats for torch (1 call per visit), repeats/10 for onnxruntime")
    p.add_argument("--calibrate", type=int, default=20)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    arch = supernet_config(args.arch)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    measure = MeasureConfig(threads=args.threads, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds, calibrate=args.calibrate)
    lut = LatencyLUT.build(arch, ["torch", "onnxruntime"], measure, progress=False, seed=0)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = lut.save(os.path.join(tmp, "lut.yaml"))
        t0 = time.perf_counter()
        res = lut_check(str(path), args.n, ["torch", "onnxruntime"], args.threads, args.warmup, args.repeats, seed=1, progress=False, rounds=args.rounds)
        check_s = time.perf_counter() - t0
    print(f"{args.arch}: {len(lut)} layer shapes, table built in {build_s:.0f}s, {args.n} sub-networks checked in {check_s:.0f}s, "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print("per-call overhead subtracted from onnxruntime entries (median ms):", {e: round(v, 4) for e, v in lut.meta["call_overhead_ms"].items()})
    print("calibration (measured = scale * sum + offset):", {e: {k: round(v, 3) for k, v in c.items() if isinstance(v, (int, float))} for e, c in lut.meta["calibration"].items()})
    print("| engine | sub-networks | measured ms (min-max) | mean abs error % | p90 abs error % | within 10% |")
    print("|---|---|---|---|---|---|")
    for e, s in res["summary"].items():
        meas = [r["measured_ms"] for r in res["rows"] if r["engine"] == e]
        print(f"| {e} | {s['n']} | {min(meas):.3f}-{max(meas):.3f} | {s['mean_abs_error_pct']:.1f} | {s['p90_abs_error_pct']:.1f} | {100 * s['within_10pct']:.0f}% |")


if __name__ == "__main__":
    main()
