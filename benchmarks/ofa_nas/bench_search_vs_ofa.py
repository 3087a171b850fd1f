"""OFA evolution search: hwaml-ofa-nas vs the reference `ofa` package's EvolutionFinder.

Both search OFA's ImageNet MobileNetV3 space (5 stages, depth 2-4, kernel
3/5/7, expand 3/4/6, resolution 160-224 step 4) with the same hyper-parameters
(population 100, parents 25%, mutation ratio 0.5, mutate prob 0.1, resolution
mutate prob 0.5, 500 generations), the same accuracy predictor (OFA's MLP
shape, 3 x 400, fitted once) and the same MACs constraint, counted by the same
exact table (hwaml_ofa_nas.predictors.MacsTable, equal to count_macs): the
reference calls it per sample through its get_efficiency interface, hwaml on a
whole batch of genomes. Reported: wall time and best predicted accuracy (mean
over seeds).

    pip install --no-deps ofa     # the reference; its torchvision import is stubbed
    python benchmarks/ofa_nas/bench_search_vs_ofa.py [--seeds 3] [--generations 500]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "stubs"))  # torchvision stub, this script only

from ofa.nas.accuracy_predictor.arch_encoder import MobileNetArchEncoder  # noqa: E402
from ofa.nas.search_algorithm.evolution import EvolutionFinder  # noqa: E402

from hwaml import CostReport  # noqa: E402
from hwaml.testing import make_context  # noqa: E402
from hwaml_ofa_nas.evolution import OFAEvolutionSearcher, evolution_search  # noqa: E402
from hwaml_ofa_nas.predictors import AccuracyPredictor, ArchEncoder, MacsTable, count_macs  # noqa: E402
from hwaml_ofa_nas.supernet import OFAMobileNetV3, supernet_config  # noqa: E402

ARCH = supernet_config("mobilenetv3_large")
SPACE = OFAMobileNetV3.space_for(ARCH)
ENC = ArchEncoder(SPACE.meta["ofa"])
MACS = MacsTable(ARCH, ENC)


def ofa_to_config(arch_dict):
    """OFA's {ks, e, d, image_size} (20 block slots) to a hwaml sub-network config."""
    cfg = {"resolution": int(arch_dict["image_size"])}
    for s, key in enumerate(ARCH.stage_names):
        d = int(arch_dict["d"][s])
        cfg[key] = [{"kernel": int(arch_dict["ks"][4 * s + b]), "expand": int(arch_dict["e"][4 * s + b])} for b in range(d)]
    return cfg


def proxy_accuracy(cfg):
    """A structured stand-in for ImageNet accuracy: saturating in MACs, with a
    bonus for resolution and for large kernels late in the network."""
    macs = count_macs(ARCH, cfg) / 1e6
    late_kernels = np.mean([b["kernel"] for key in ARCH.stage_names[3:] for b in cfg[key]])
    return 0.62 + 0.16 * (1 - np.exp(-macs / 250.0)) + 0.01 * (cfg["resolution"] - 160) / 64 + 0.005 * (late_kernels - 3) / 4


def make_predictor(seed=0, n=3000):
    """OFA's MLP (3 x 400) fitted to the proxy on n random sub-networks: a fixed,
    learned predictor that both searchers query."""
    from hwaml_ofa_nas.predictors import fit_accuracy_predictor

    rng = np.random.default_rng(seed)
    configs = [SPACE.sample(rng) for _ in range(n)]
    y = np.array([proxy_accuracy(c) for c in configs])
    model, report = fit_accuracy_predictor(ENC.encode_configs(configs), y, epochs=60, val_fraction=0.1, seed=seed)
    print(f"predictor: held-out RMSE {report.rmse_val:.4f} (constant predictor {report.rmse_constant:.4f})", flush=True)
    return model


class OFAAccuracyAdapter:
    """The same MLP behind the reference's predict_acc(list of arch dicts) interface."""

    def __init__(self, model):
        self.model = model
        self.arch_encoder = MobileNetArchEncoder(image_size_list=list(ARCH.resolutions), ks_list=[3, 5, 7], expand_list=[3, 4, 6], depth_list=[2, 3, 4], n_stage=5)

    def predict_acc(self, arch_dicts):
        X = ENC.encode_configs([ofa_to_config(a) for a in arch_dicts])
        with torch.no_grad():
            return self.model(torch.from_numpy(X))


class OFAMacsAdapter:
    def get_efficiency(self, arch_dict):
        return MACS.macs_of(ofa_to_config(arch_dict)) / 1e6


def run_reference(model, limit, seed, generations):
    random.seed(seed)
    np.random.seed(seed)
    finder = EvolutionFinder(OFAMacsAdapter(), OFAAccuracyAdapter(model), max_time_budget=generations)
    t0 = time.perf_counter()
    _, (acc, arch, eff) = finder.run_evolution_search(limit, verbose=False)
    return time.perf_counter() - t0, float(acc), float(eff)


def run_ours_core(model, limit, seed, generations):
    predict = lambda X: model.predict(X)
    feasible = lambda g: MACS.macs(g) <= limit * 1e6
    t0 = time.perf_counter()
    res = evolution_search(ENC, predict, np.random.default_rng(seed), generations=generations, feasible_batch=feasible)
    return time.perf_counter() - t0, res.best_score, count_macs(ARCH, res.best_config) / 1e6


def run_ours_searcher(model, limit, seed, generations, tmp):
    """The registered searcher, through ctx.cost_fn (a merged CostReport) like a real run.

    The cost is OFA's exact analytic count (the table, as the reference gets): the
    ``macs`` backend reports the same numbers (tests check it) but counts each
    candidate on the evaluator's built network, which would time network
    construction rather than the search."""
    path = model.save(Path(tmp) / "predictor.pt", SPACE.meta["ofa"])
    cost = lambda c: CostReport({"macs_m": MACS.macs_of(c.config) / 1e6}, source="macs")
    ctx = replace(make_context(Path(tmp) / "run", seed=seed, constraints={"macs_m": limit}), cost_fn=cost)
    searcher = OFAEvolutionSearcher(generations=generations, predictor_path=str(path))
    t0 = time.perf_counter()
    cand = searcher.propose(space=SPACE, history=[], n=1, ctx=ctx)[0]
    elapsed = time.perf_counter() - t0
    return elapsed, float(cand.meta["predicted_accuracy"]), count_macs(ARCH, cand.config) / 1e6


def main(argv=None):
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--generations", type=int, default=500)
    p.add_argument("--limits", default="250,350", help="MACs constraints in millions")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = make_predictor(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for limit in [float(x) for x in args.limits.split(",")]:
            for name, fn in (("ofa EvolutionFinder (reference)", run_reference), ("hwaml evolution_search", run_ours_core), ("hwaml ofa_evolution searcher", None)):
                times, accs, effs = [], [], []
                for seed in range(args.seeds):
                    if fn is None:
                        t, a, e = run_ours_searcher(model, limit, seed, args.generations, tmp)
                    else:
                        t, a, e = fn(model, limit, seed, args.generations)
                    assert e <= limit + 1e-9, f"{name} returned {e} MMACs > {limit}"
                    times.append(t)
                    accs.append(a)
                    effs.append(e)
                rows.append((limit, name, float(np.mean(times)), float(np.mean(accs)), float(np.std(accs)), float(np.mean(effs))))
                print(f"  done: {limit:g} MMACs, {name}: {np.mean(times):.1f}s, best {np.mean(accs):.4f}", flush=True)
    print()
    print(f"OFA evolution, {args.generations} generations x population 100, {args.seeds} seeds, mobilenetv3_large space, same predictor and MACs constraint")
    print("| MACs limit (M) | searcher | wall time (s) | best predicted acc (mean +- sd) | MACs of best (M) |")
    print("|---|---|---|---|---|")
    for limit, name, t, a, sd, e in rows:
        print(f"| {limit:g} | {name} | {t:.2f} | {a:.4f} +- {sd:.4f} | {e:.1f} |")


if __name__ == "__main__":
    main()
