"""The pure-PyTorch sparse backend vs spconv 2.3.8 (CPU build) on the same layers and scans.

    python benchmarks/spvnas/backend_speed.py [--scans 3] [--voxel 0.1] [--columns 2083] [--channels 32]

Layers of SPVCNN's stem/stage-1 shape on procedural 64-beam scans: a 3x3x3
submanifold convolution, a kernel-2 stride-2 convolution and its transposed
inverse, forward (with kernel-map building, as in a network's first pass) and
backward; single thread, median of --repeats, the two libraries timed alternately. spconv's CPU build has no backward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hwaml_spvnas.data import ProceduralLidar, prepare_scan
from hwaml_spvnas.lidar_sim import SensorConfig
from hwaml_spvnas.sparse import SparseTensor, conv3d
from hwaml_spvnas.spconv_backend import SpconvRunner


def timed(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return 1000 * statistics.median(out)


def timed_pair(fa, fb, repeats):
    """Medians of two functions timed alternately (a shared machine's load hits both alike)."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(repeats):
        for f, acc in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return 1000 * statistics.median(ta), 1000 * statistics.median(tb)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--voxel", type=float, default=0.1)
    ap.add_argument("--columns", type=int, default=2083)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = ProceduralLidar(a.scans, seed=100, sensor=SensorConfig(columns=a.columns))
    C = a.channels
    w_sub = torch.randn(27, C, C) * 0.05
    w_down = torch.randn(8, C, C) * 0.1
    w_up = torch.randn(8, C, C) * 0.1
    rows = {k: [] for k in ("subm fwd", "down fwd", "up fwd", "subm fwd+bwd", "down+up fwd+bwd")}
    theirs = {k: [] for k in ("subm fwd", "down fwd", "up fwd")}
    voxels = []
    for i in range(len(ds)):
        s = prepare_scan(*ds[i], a.voxel)
        coords = torch.cat([torch.zeros(len(s.coords), 1), torch.floor(s.coords)], 1).long()
        feats = torch.randn(len(coords), C)
        voxels.append(len(coords))

        def ours_subm():
            with torch.no_grad():
                conv3d(SparseTensor(feats, coords), w_sub, 3, 1)

        def ours_down():
            with torch.no_grad():
                conv3d(SparseTensor(feats, coords), w_down, 2, 2)

        x_cached = SparseTensor(feats, coords)
        d_cached = conv3d(x_cached, w_down, 2, 2)

        def ours_up():
            with torch.no_grad():
                conv3d(d_cached, w_up, 2, 2, transposed=True)

        def ours_subm_bwd():
            f = feats.clone().requires_grad_(True)
            w = w_sub.clone().requires_grad_(True)
            conv3d(SparseTensor(f, coords), w, 3, 1).F.sum().backward()

        def ours_downup_bwd():
            f = feats.clone().requires_grad_(True)
            w1, w2 = w_down.clone().requires_grad_(True), w_up.clone().requires_grad_(True)
            d = conv3d(SparseTensor(f, coords), w1, 2, 2)
            conv3d(d, w2, 2, 2, transposed=True).F.sum().backward()

        r = SpconvRunner()

        def sp_subm():
            with torch.no_grad():
                t = r.start(SparseTensor(feats, coords))
                r.conv(t, w_sub, 3, 1, key="s")

        def sp_down():
            with torch.no_grad():
                t = r.start(SparseTensor(feats, coords))
                r.conv(t, w_down, 2, 2, key="d")

        with torch.no_grad():
            t0 = r.start(SparseTensor(feats, coords))
            td = r.conv(t0, w_down, 2, 2, key="d")

        def sp_up():
            with torch.no_grad():
                r.conv(td, w_up, 2, 2, transposed=True, key="d")

        for key, fa, fb in (("subm fwd", ours_subm, sp_subm), ("down fwd", ours_down, sp_down), ("up fwd", ours_up, sp_up)):
            x, y = timed_pair(fa, fb, a.repeats)
            rows[key].append(x)
            theirs[key].append(y)
        rows["subm fwd+bwd"].append(timed(ours_subm_bwd, a.repeats))
        rows["down+up fwd+bwd"].append(timed(ours_downup_bwd, a.repeats))

    print(f"procedural scans: {a.scans}, {a.columns} columns x 64 beams, voxel {a.voxel} m, voxels per scan {voxels}, C_in = C_out = {C}, 1 thread")
    print(f"{'layer':<18}{'hwaml_spvnas ms':>17}{'spconv 2.3.8 ms':>17}{'ratio':>8}")
    for k, v in rows.items():
        ours = statistics.mean(v)
        if k in theirs:
            sp = statistics.mean(theirs[k])
            print(f"{k:<18}{ours:>17.1f}{sp:>17.1f}{ours / sp:>8.2f}")
        else:
            print(f"{k:<18}{ours:>17.1f}{'no CPU backward':>17}{'-':>8}")


if __name__ == "__main__":
    main()
