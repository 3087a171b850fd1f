"""SPVCNN vs the voxel-only MinkUNet-style baseline (same backbone) on procedural LiDAR scans.

    python benchmarks/spvnas/spvcnn_vs_minkunet.py [--seeds 1 2] [--widths 0.25 0.5] [--epochs 12] [--batch 1] [--models minkunet spvcnn]

(one model per invocation keeps each run under ~10 minutes on a loaded 2-core machine)

Both are trained from scratch with the same recipe (SGD Nesterov, cosine with
warm-up, rotation/scale augmentation) on the same scans, and scored on held-out
scans (a different procedural seed): mIoU over the classes present, and the mean
IoU of the small-object classes (person, bicyclist, pole, traffic-sign). MACs
per the issue (kernel-map entries x C_in x C_out), averaged over the test scans.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hwaml_spvnas.data import ProceduralLidar, collate, prepare_scan
from hwaml_spvnas.lidar_sim import SensorConfig
from hwaml_spvnas.metrics import SMALL_CLASSES
from hwaml_spvnas.models import SPVCNN, spvcnn_spec
from hwaml_spvnas.sparse import count_macs
from hwaml_spvnas.training import Trainer, TrainingConfig, evaluate_scans


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--train", type=int, default=12)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--columns", type=int, default=512)
    ap.add_argument("--voxel", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--models", nargs="+", default=["minkunet", "spvcnn"], choices=["minkunet", "spvcnn"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    sensor = SensorConfig(columns=a.columns)
    train = [ProceduralLidar(a.train, seed=10, sensor=sensor)[i] for i in range(a.train)]
    test = [ProceduralLidar(a.test, seed=20, sensor=sensor)[i] for i in range(a.test)]
    results = {}
    for width in a.widths:
      for model in a.models:
        for seed in a.seeds:
            torch.manual_seed(seed)
            net = SPVCNN(spvcnn_spec(width), 19, point_branch=model == "spvcnn")
            cfg = TrainingConfig(epochs=a.epochs, batch_size=a.batch, lr=a.lr, warmup_epochs=1.0)
            tr = Trainer(net, train, a.voxel, cfg, seed=seed, show_progress=False, desc=model)
            t0 = time.time()
            for e in range(a.epochs):
                tr.train_epoch(e)
            cm = evaluate_scans(net, test, a.voxel, 19)
            small = [c for c in SMALL_CLASSES if c in cm.per_class()]
            with torch.no_grad():
                macs = []
                for p, l in test:
                    with count_macs() as m:
                        net.eval()(collate([prepare_scan(p, l, a.voxel)])[0])
                    macs.append(m.total)
            results[(width, model, seed)] = (cm.miou(), cm.miou(small), statistics.mean(macs) / 1e6, time.time() - t0, cm.per_class())
            per = ", ".join(f"{c} {v:.3f}" for c, v in cm.per_class().items())
            print(f"width {width} {model} seed {seed}: mIoU {cm.miou():.4f} small {cm.miou(small):.4f} ({per}) {time.time() - t0:.0f}s", flush=True)
    print()
    print(f"procedural scans: {a.train} train (seed 10) / {a.test} test (seed 20), {a.columns} columns x 64 beams, voxel {a.voxel} m, {a.epochs} epochs, batch {a.batch}, lr {a.lr}, seeds {a.seeds}")
    print(f"{'width':<7}{'model':<10}{'mIoU':>14}{'small-object mIoU':>22}{'MACs (M)':>12}")
    for width, model in [(w, m) for w in a.widths for m in a.models]:
        r = [results[(width, model, s)] for s in a.seeds]
        mi = [x[0] for x in r]
        sm = [x[1] for x in r]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"{width:<7}{model:<10}{statistics.mean(mi):>8.4f} ±{sd(mi):.3f}{statistics.mean(sm):>16.4f} ±{sd(sm):.3f}{statistics.mean(x[2] for x in r):>12.0f}")


if __name__ == "__main__":
    main()
