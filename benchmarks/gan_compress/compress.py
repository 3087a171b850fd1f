"""GAN Compression at small scale: the searched once-for-all sub-generator against the
teacher and against a uniformly narrowed student of the same MACs trained from scratch
with the same budget (with and without distillation).

    python benchmarks/gan_compress/compress.py --task paired
    python benchmarks/gan_compress/compress.py --task unpaired --no-baselines

The teacher and the once-for-all generator are the evaluator preset's
(``evaluator=gan_paired`` / ``gan_unpaired``; trained on first use and cached, or
beforehand with ``hwaml-gan-compress train <preset>``). The search runs through
hwaml (``gan_evolution`` searcher, ``gan_macs`` backend, constraint
``macs_m <= teacher / ratio``) and scores candidates on the held-out slice of the
training set; every figure in the table is on the test split, which the search
never saw. Latency: onnxruntime, one thread, one image, on this
machine, teacher and student timed in 7 interleaved rounds of 30 runs; ``latency_ms``
is the smallest CPU time of the calling thread (the machine is shared: CPU time does not
count time the core spent on other jobs), ``wall_ms`` the smallest wall time.
``--latency-speedup 5`` reports the latency budget (teacher / 5) and the smallest
sub-generator's latency and FID; with ``--latency-search`` also a second search under
both the MACs budget and measured latency (``backend=gan_latency``, ``latency_ms <= teacher / 5``). FID spread: standard deviation of the FID over 5 bootstrap resamples of
the test images; "FID real halves": FID between two halves of the real test
images (the metric's floor at this sample size).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hwaml.testing import run_search
from hwaml_gan_compress.backends import GanLatencyBackend, GanMacsBackend
from hwaml_gan_compress.cli import load_preset
from hwaml_gan_compress.evolution import GanEvolutionSearcher
from hwaml_gan_compress.export import compare_latency
from hwaml_gan_compress.generators import ChannelConfig, count_config_macs
from hwaml_gan_compress.macs import count_module_macs
from hwaml_gan_compress.metrics import extract_features, fid
from hwaml_gan_compress.training import generate, train_student_from_scratch


def bootstrap_fid(ev, model, seeds=5):
    data = ev.data()
    real = ev._real("test")["features"]
    fake = extract_features(ev.features(), generate(model, data.test_a))
    vals = []
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        i, j = rng.integers(len(real), size=len(real)), rng.integers(len(fake), size=len(fake))
        vals.append(fid(real[i], fake[j]))
    return float(np.std(vals))


def row(ev, name, model, config_macs=None):
    shape = ev.data().image_shape
    macs = count_module_macs(model, shape)
    if config_macs is not None:
        assert macs == config_macs, (macs, config_macs)
    q = ev.score(model, "test")
    out = {"model": name, "macs_m": macs / 1e6, "fid": q["fid"], "fid_spread": bootstrap_fid(ev, model), "kid": q["kid"]}
    if "psnr" in q:
        out["psnr"] = q["psnr"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["paired", "unpaired"], default="paired")
    ap.add_argument("--ratio", type=float, default=9.0, help="MACs budget: teacher MACs / ratio")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1, help="the search's seed")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--latency-speedup", type=float, default=None, help="report the latency budget teacher / this and the smallest sub-generator's latency")
    ap.add_argument("--latency-search", action="store_true", help="with --latency-speedup: also search under that latency budget and the MACs budget "
                    "(slow where few sub-generators meet it: each rejected draw is timed)")
    ap.add_argument("--baseline-epochs", type=int, nargs=2, default=None, metavar=("CONSTANT", "DECAY"),
                    help="epochs of the from-scratch students (default: the once-for-all run's; give the total when it was continued with student.init)")
    ap.add_argument("overrides", nargs="*", help="evaluator overrides, key=value")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    ev = load_preset(f"gan_{args.task}", [*args.overrides, "progress=false"])
    teacher = ev.teacher().G
    state = ev.supernet()
    data = ev.data()
    shape = data.image_shape
    teacher_macs = count_module_macs(teacher, shape)
    budget = teacher_macs / args.ratio / 1e6
    print(f"# GAN Compression, {args.task}: {data.description}")
    print(f"# teacher {ev.teacher_cfg.arch} ngf {ev.teacher_cfg.ngf}, {ev.teacher_cfg.n_blocks} blocks; student ngf {ev.student_cfg.ngf}, choices {ev.choices[0]}")
    print(f"# MACs budget {budget:.3f} M (teacher / {args.ratio:g}); search: gan_evolution, {args.trials} trials, seed {args.seed}, scored on the held-out train slice")
    print(f"# once-for-all epochs: {len(state.history)}" + (f" (continued from {ev.student_cfg.init})" if ev.student_cfg.init else "") + f"; training seeds: teacher {ev.seed}, once-for-all and baselines {ev.student_seed}")
    print(f"# machine: {platform.processor() or platform.machine()}, {platform.python_version()}, torch {torch.__version__}, 1 thread")

    def search(backends, constraints):
        t1 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            searcher = GanEvolutionSearcher(population_size=20, parents=5, mutations=10, crossovers=10)
            result = run_search(
                {"evaluator": ev, "searcher": searcher, **backends},
                Path(tmp) / "search", trials=args.trials, objectives={"fid": "min"}, constraints=constraints, seed=args.seed,
            )  # fmt: skip
        done = [t for t in result.trials if t.ok]
        infeasible = sum(1 for t in result.trials if t.status == "infeasible")
        best = min(done, key=lambda t: t.metrics["fid"])
        cfg = ChannelConfig.from_any(best.candidate.config)
        print(f"# search under {constraints}: {len(done)} evaluated, {infeasible} infeasible recorded; best {cfg.to_str()} (val FID {best.metrics['fid']:.3f}) in {time.time() - t1:.0f} s")
        return cfg

    best_cfg = search({"backend.gan_macs": GanMacsBackend()}, {"macs_m": budget})
    lat_cfg = None
    if args.latency_speedup:
        (t_lat,) = compare_latency([teacher], (1, *shape), threads=1, rounds=7, repeats=30)
        lat_budget = t_lat["cpu"] / args.latency_speedup
        smallest = state.supernet.smallest()
        (s_lat,) = compare_latency([ev.subgenerator(smallest)], (1, *shape), threads=1, rounds=7, repeats=30)
        print(f"# latency budget {lat_budget:.3f} ms (teacher {t_lat['cpu']:.3f} ms / {args.latency_speedup:g}); the smallest sub-generator {smallest.to_str()}: {s_lat['cpu']:.3f} ms")
        if s_lat["cpu"] > lat_budget:
            print("# no sub-generator meets the latency budget (the smallest does not): latency-constrained search skipped")
    if args.latency_speedup and args.latency_search and s_lat["cpu"] <= lat_budget:
        lat_cfg = search({"backend.gan_macs": GanMacsBackend(), "backend.gan_latency": GanLatencyBackend(repeats=50)}, {"macs_m": budget, "latency_ms": lat_budget})

    rows = [row(ev, "teacher (ResNet)", teacher)]
    searched = ev.subgenerator(best_cfg)
    rows.append(row(ev, f"searched OFA sub-generator {best_cfg.to_str()}", searched, ev.macs(best_cfg)))
    timed = [teacher, searched]
    if lat_cfg is not None:
        timed.append(ev.subgenerator(lat_cfg))
        rows.append(row(ev, f"searched under MACs and latency {lat_cfg.to_str()}", timed[-1], ev.macs(lat_cfg)))
    if args.latency_speedup:
        timed.append(ev.subgenerator(smallest))
        rows.append(row(ev, f"OFA smallest {smallest.to_str()} (no retraining)", timed[-1], ev.macs(smallest)))
    for r, t in zip(rows, compare_latency(timed, (1, *shape), threads=1, rounds=7, repeats=30)):
        r["latency_ms"], r["wall_ms"] = t["cpu"], t["wall"]
    sup = state.supernet
    rows.append(row(ev, f"OFA largest {sup.largest().to_str()}", ev.subgenerator(sup.largest())))
    uniform = max((c for c in sorted({v for ch in ev.choices for v in ch}) if all(c in ch for ch in ev.choices) and ev.macs(ChannelConfig.uniform(c)) / 1e6 <= budget), default=None)
    if uniform is not None:
        ucfg = ChannelConfig.uniform(uniform)
        rows.append(row(ev, f"OFA uniform {ucfg.to_str()} (no retraining)", ev.subgenerator(ucfg), ev.macs(ucfg)))
        if not args.no_baselines:
            tr = ev.training
            for distill in (True, False):
                t1 = time.time()
                model = train_student_from_scratch(
                    data, ev.subgenerator(ucfg), ev.teacher(), ev.teacher_cfg, ev.student_cfg, tr,
                    *(args.baseline_epochs or (tr.supernet_epochs, tr.supernet_decay_epochs)), distill=distill, seed=ev.student_seed, progress_bar=False,
                )  # fmt: skip
                label = f"uniform {ucfg.to_str()} from scratch, {'with' if distill else 'no'} distillation ({time.time() - t1:.0f} s)"
                rows.append(row(ev, label, model, ev.macs(ucfg)))
    real_floor = ev._real("test")["fid_real_halves"]
    keys = ["macs_m", "latency_ms", "wall_ms", "fid", "fid_spread", "kid"] + (["psnr"] if data.paired else [])
    print()
    print("| model | " + " | ".join(keys) + " | MACs reduction | speedup |")
    print("|---" * (len(keys) + 3) + "|")
    t_lat = rows[0]["latency_ms"]
    for r in rows:
        cells = [f"{r[k]:.3f}" if k in r else "-" for k in keys]
        red = f"{teacher_macs / 1e6 / r['macs_m']:.1f}x"
        sp = f"{t_lat / r['latency_ms']:.1f}x" if "latency_ms" in r else "-"
        print(f"| {r['model']} | " + " | ".join(cells) + f" | {red} | {sp} |")
    print()
    print(f"FID real halves (test, the metric's floor): {real_floor:.3f}; total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
