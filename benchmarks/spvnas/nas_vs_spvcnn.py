"""3D-NAS vs SPVCNN scaled to the same MACs, on procedural LiDAR scans.

    python benchmarks/spvnas/nas_vs_spvcnn.py supernet                     # train the supernet once (cached)
    python benchmarks/spvnas/nas_vs_spvcnn.py search --ratio 0.5           # 3D-NAS evolution under SPVCNN x0.5's MACs
    python benchmarks/spvnas/nas_vs_spvcnn.py train --ratio 0.5 --models spvcnn_scratch nas_finetune --seeds 1 2 3
    python benchmarks/spvnas/nas_vs_spvcnn.py search --budget-m 400 --max-resample 100000   # an explicit budget (below SPVCNN x0.5, the space's smallest SPVCNN)
    python benchmarks/spvnas/nas_vs_spvcnn.py train --budget-m 400 --models nas_finetune --seeds 1
    python benchmarks/spvnas/nas_vs_spvcnn.py report                       # the table from every stored result

(the stages are separate invocations so that each stays under ~10 minutes on a loaded 2-core machine;
every result is stored under ~/.cache/hwaml/spvnas/bench_nas/ and the report prints all of them)

The steps, as in SPVNAS:

1. the supernet (3D-NAS's space at ``width_multiplier`` 0.5: stage widths between the released lower and
   upper bounds x 0.5, depth 1-2, middle widths 0.125-1) trained by uniform sampling with progressive
   depth shrinking on 12 training scans (procedural seed 10), through ``SPVNASEvaluator.supernet()``;
2. 3D-NAS's evolution (:class:`hwaml_spvnas.evolution.ThreeDNASEvolution`) under a MACs budget equal to
   SPVCNN's at a uniform width ratio (MACs counted as the issue asks, kernel-map entries x C_in x C_out,
   on a search scan, through :class:`hwaml_spvnas.macs_model.MacsModel`, exact and without a forward pass); fitness = mIoU of the sub-network with the supernet's weights (batch norm
   recalibrated on 2 training scans) on 4 search-validation scans (seed 11);
3. the comparison on 4 held-out test scans (seed 20) with model seeds 1-3, every network trained the same
   12 epochs on the same 12 scans: ``spvcnn_scratch`` (SPVCNN at the width ratio from scratch, the
   issue's baseline), ``nas_finetune`` (the searched sub-network fine-tuned from the supernet's weights),
   and two controls that separate architecture from weight inheritance: ``nas_scratch`` (the searched
   architecture from scratch) and ``spvcnn_finetune`` (SPVCNN x ratio is inside the space: fine-tuned
   from the same supernet).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nas_settings as S  # noqa: E402

from hwaml_spvnas.data import ProceduralLidar, collate, prepare_scan  # noqa: E402
from hwaml_spvnas.evolution import ThreeDNASEvolution, genes_of, key_of  # noqa: E402
from hwaml_spvnas.lidar_sim import SensorConfig  # noqa: E402
from hwaml_spvnas.macs_model import TERMS, MacsModel  # noqa: E402
from hwaml_spvnas.metrics import SMALL_CLASSES  # noqa: E402
from hwaml_spvnas.sparse import PointTensor, count_macs  # noqa: E402
from hwaml_spvnas.training import Trainer, TrainingConfig, evaluate_scans, recalibrate_bn  # noqa: E402

MODELS = ("spvcnn_scratch", "nas_finetune", "nas_scratch", "spvcnn_finetune")


def macs_m(net, scans, voxel) -> float:
    out = []
    with torch.no_grad():
        net.eval()
        for p, l in scans:
            with count_macs() as m:
                net(collate([prepare_scan(p, l, voxel)])[0])
            out.append(m.total)
    return float(np.mean(out)) / 1e6


def test_scans():
    sensor = SensorConfig(columns=S.DATA["columns"])
    return [ProceduralLidar(S.TEST_SCANS, seed=S.TEST_SEED, sensor=sensor)[i] for i in range(S.TEST_SCANS)]


def cmd_supernet(a) -> None:
    """The evaluator's supernet training (uniform sampling, progressive depth shrinking), run ``--epochs-per-run``
    epochs per invocation: the trainer's state (weights, optimiser, step, random generators) is saved between
    invocations, and after the last epoch the supernet goes where ``SPVNASEvaluator.supernet()`` loads it from."""
    t0 = time.time()
    ev = S.evaluator(progress=a.progress)
    final = ev.checkpoint_path()
    if final.exists():
        print(f"supernet {final} already trained")
        return
    net = ev.new_network(ev.design.supernet_spec())
    train, _ = ev.scans()
    tr = Trainer(net, train, S.DATA["voxel_size"], ev.supernet_training, ev.seed, sample_arch=ev.sample_arch, show_progress=a.progress, desc="supernet")
    state, meta = S.CACHE / "supernet_state.pt", S.CACHE / "supernet_state.json"
    start = 0
    if state.exists():
        blob = torch.load(state, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["net"])
        tr.opt.load_state_dict(blob["opt"])
        torch.set_rng_state(blob["torch_rng"])
        m = json.loads(meta.read_text())
        start, tr.step = m["epoch"], m["step"]
        tr.rng.bit_generator.state = m["rng"]
    end = min(ev.supernet_training.epochs, start + a.epochs_per_run)
    for epoch in range(start, end):
        loss = tr.train_epoch(epoch)
        print(f"  supernet epoch {epoch + 1}/{ev.supernet_training.epochs}: loss {loss:.3f} ({time.time() - t0:.0f}s)", flush=True)
    if end < ev.supernet_training.epochs:
        torch.save({"net": net.state_dict(), "opt": tr.opt.state_dict(), "torch_rng": torch.get_rng_state()}, state)
        meta.write_text(json.dumps({"epoch": end, "step": tr.step, "rng": tr.rng.bit_generator.state}))
        print(f"supernet: {end}/{ev.supernet_training.epochs} epochs, run again to continue")
        return
    torch.save(net.state_dict(), final)
    final.with_suffix(".json").write_text(json.dumps({"spec": net.spec, "model": ev.model, "key": ev._key()}, indent=1))
    print(f"supernet {final} trained ({time.time() - t0:.0f}s for the last {end - start} epochs)")


def label(a) -> str:
    """Where a budget's results live: ``r<ratio>`` (SPVCNN's MACs at that ratio) or ``m<budget>`` (an explicit
    budget in M MACs, for budgets below SPVCNN's smallest in the space, x0.5)."""
    return f"m{a.budget_m:g}" if getattr(a, "budget_m", None) else f"r{a.ratio}"


def search_path(lab: str) -> Path:
    return S.CACHE / f"search_{lab}.json"


def cmd_search(a) -> None:
    ev = S.evaluator()
    sup = ev.supernet()
    train, val = ev.scans()
    vs = S.DATA["voxel_size"]
    design = ev.design
    # the MACs constraint on a search scan, through the exact width polynomial (fitted on 16 counted forwards, checked on 2 more)
    z = collate([prepare_scan(*val[0], vs)])[0]
    rng = np.random.default_rng(1000 + a.seed)
    probe = [design.arch_from_config(design.search_space().sample(rng)) for _ in range(len(TERMS) + 7)]
    mm = MacsModel.fit(lambda arch: sup.subnet(arch), probe, [lambda: PointTensor(z.F, z.C)], num_classes=ev.num_classes,
                       shortcuts=sup.spec["shortcuts"])
    spv_cfg = design.spvcnn_config(a.ratio)
    budget = a.budget_m if a.budget_m else mm.macs(design.arch_from_config(spv_cfg)) / 1e6

    def macs_of(cfg) -> float:
        return mm.macs(design.arch_from_config(cfg)) / 1e6

    def fitness(cfg) -> float:
        net = sup.subnet(design.arch_from_config(cfg))
        recalibrate_bn(net, train[:2], vs)
        return evaluate_scans(net, val, vs, ev.num_classes).miou()

    evo = ThreeDNASEvolution(genes_of(design.search_space()), population_size=a.population, parent_ratio=a.parent_ratio,
                             mutation_ratio=0.5, mutate_prob=a.mutate_prob,
                             max_resample=a.max_resample)
    t0 = time.time()
    res = evo.run(fitness, np.random.default_rng(a.seed), generations=a.generations, feasible=lambda c: macs_of(c) <= budget,
                  progress=lambda g, best: print(f"  generation {g}: best supernet mIoU {best:.4f} ({time.time() - t0:.0f}s)", flush=True))
    spv_fit = fitness(spv_cfg)
    out = {"ratio": a.ratio, "label": label(a), "budget_macs_m": budget, "best_config": res.best_config, "best_fitness": res.best_score,
           "spvcnn_config": spv_cfg, "spvcnn_fitness": spv_fit, "best_macs_m": macs_of(res.best_config),
           "best_per_generation": res.best_per_generation, "n_evaluated": res.n_evaluated, "n_rejected": res.n_rejected,
           "seconds": time.time() - t0, "population": a.population, "generations": a.generations, "parent_ratio": a.parent_ratio,
           "mutate_prob": a.mutate_prob, "max_resample": a.max_resample, "seed": a.seed}
    search_path(label(a)).write_text(json.dumps(out, indent=1))
    print(f"{label(a)}: budget {budget:.0f} M MACs; searched {out['best_macs_m']:.0f} M, "
          f"supernet mIoU {res.best_score:.4f} (SPVCNN x{a.ratio} in the supernet: {spv_fit:.4f}); "
          f"{res.n_evaluated} sub-networks scored, {res.n_rejected} rejected, {out['seconds']:.0f}s")
    print("  searched:", json.dumps(design.arch_from_config(res.best_config)))


def result_path(lab: str, model: str, seed: int) -> Path:
    return S.CACHE / f"result_{lab}_{model}_s{seed}.json"


def cmd_train(a) -> None:
    ev = S.evaluator()
    train, _ = ev.scans()
    test = test_scans()
    vs = S.DATA["voxel_size"]
    design = ev.design
    lab = label(a)
    found = json.loads(search_path(lab).read_text()) if search_path(lab).exists() else None
    for model in a.models:
        if model.startswith("nas") and found is None:
            how = f"--budget-m {a.budget_m:g}" if a.budget_m else f"--ratio {a.ratio}"
            raise SystemExit(f"no search result for {lab}: run `search {how}` first")
        if model.startswith("spvcnn") and a.budget_m:
            raise SystemExit("--budget-m is for the searched models; SPVCNN's size is set by --ratio")
        cfg = found["best_config"] if model.startswith("nas") else design.spvcnn_config(a.ratio)
        arch = design.arch_from_config(cfg)
        for seed in a.seeds:
            t0 = time.time()
            torch.manual_seed(seed)
            if model.endswith("finetune"):
                net = ev.supernet().subnet(arch)
                recalibrate_bn(net, train[:2], vs)
                tcfg = TrainingConfig(**{**S.TRAIN, "lr": S.FINETUNE_LR, "warmup_epochs": 0.0})
            else:
                net = ev.new_network(arch)
                tcfg = TrainingConfig(**S.TRAIN)
            tr = Trainer(net, train, vs, tcfg, seed=seed, show_progress=a.progress, desc=model)
            for e in range(tcfg.epochs):
                tr.train_epoch(e)
            cm = evaluate_scans(net, test, vs, ev.num_classes)
            small = [c for c in SMALL_CLASSES if c in cm.per_class()]
            r = {"ratio": a.ratio, "label": lab, "model": model, "seed": seed, "miou": cm.miou(), "small_miou": cm.miou(small), "macs_m": macs_m(net, test, vs),
                 "per_class": cm.per_class(), "arch": arch, "seconds": time.time() - t0}
            result_path(lab, model, seed).write_text(json.dumps(r, indent=1))
            per = ", ".join(f"{c} {v:.3f}" for c, v in cm.per_class().items())
            print(f"{lab} {model} seed {seed}: mIoU {r['miou']:.4f} small {r['small_miou']:.4f} MACs {r['macs_m']:.0f} M ({per}) {r['seconds']:.0f}s", flush=True)


def cmd_report(a) -> None:
    d = S.DATA
    print(f"procedural scans: {d['train_scans']} train (seed {d['seed']}) / {d['val_scans']} search-validation (seed {d['seed'] + 1}) / "
          f"{S.TEST_SCANS} test (seed {S.TEST_SEED}), {d['columns']} columns x 64 beams, voxel {d['voxel_size']} m; "
          f"space width multiplier {S.SPACE['width_multiplier']}, granularity {S.SPACE['granularity']}; supernet {S.SUPERNET['epochs']} epochs; "
          f"every network {S.TRAIN['epochs']} epochs (scratch lr {S.TRAIN['lr']}, fine-tune lr {S.FINETUNE_LR})")
    for f in sorted(S.CACHE.glob("search_*.json"), key=lambda f: json.loads(f.read_text())["budget_macs_m"]):
        s = json.loads(f.read_text())
        print(f"search {s.get('label', 'r' + str(s['ratio']))}: budget {s['budget_macs_m']:.0f} M MACs, population {s['population']} x {s['generations']} generations "
              f"(parents {s['parent_ratio']}, mutate {s['mutate_prob']}), {s['n_evaluated']} scored / {s['n_rejected']} rejected in {s['seconds']:.0f}s; "
              f"supernet mIoU searched {s['best_fitness']:.4f} at {s['best_macs_m']:.0f} M vs SPVCNN x{s['ratio']} {s['spvcnn_fitness']:.4f}; "
              f"best per generation {[round(x, 4) for x in s['best_per_generation']]}")
    rows = {}
    for f in sorted(S.CACHE.glob("result_*.json")):
        r = json.loads(f.read_text())
        rows.setdefault((r.get("label", f"r{r['ratio']}"), r["model"]), []).append(r)
    print(f"{'budget':<8}{'model':<17}{'seeds':<9}{'mIoU':>15}{'small-object mIoU':>22}{'MACs (M)':>10}")
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    budgets = {json.loads(f.read_text()).get("label", f.stem[len("search_"):]): json.loads(f.read_text())["budget_macs_m"]
               for f in S.CACHE.glob("search_*.json")}

    def order(kv):  # by budget (a label without a search: its networks' MACs), then model
        lab, model = kv[0]
        return (budgets.get(lab, min(r["macs_m"] for r in kv[1])), MODELS.index(model) if model in MODELS else 9)

    for (lab, model), rs in sorted(rows.items(), key=order):
        rs = sorted(rs, key=lambda r: r["seed"])
        mi, sm = [r["miou"] for r in rs], [r["small_miou"] for r in rs]
        seeds = ",".join(str(r["seed"]) for r in rs)
        print(f"{lab:<8}{model:<17}{seeds:<9}{statistics.mean(mi):>9.4f} ±{sd(mi):.3f}{statistics.mean(sm):>16.4f} ±{sd(sm):.3f}{statistics.mean(r['macs_m'] for r in rs):>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("supernet")
    p.add_argument("--epochs-per-run", type=int, default=1000)
    p.add_argument("--progress", action="store_true")
    p = sub.add_parser("search")
    p.add_argument("--ratio", type=float, default=0.5, help="MACs budget: SPVCNN's at this uniform width ratio")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--parent-ratio", type=float, default=0.25)
    p.add_argument("--mutate-prob", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-m", type=float, default=None, help="an explicit MACs budget (M) instead of SPVCNN's at --ratio")
    p.add_argument("--max-resample", type=int, default=1000, help="draws per candidate before the budget is declared too tight")
    p = sub.add_parser("train")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--budget-m", type=float, default=None, help="train the searched model of `search --budget-m`")
    p.add_argument("--models", nargs="+", default=["spvcnn_scratch", "nas_finetune"], choices=MODELS)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--progress", action="store_true")
    sub.add_parser("report")
    a = ap.parse_args()
    torch.set_num_threads(1)
    S.CACHE.mkdir(parents=True, exist_ok=True)
    {"supernet": cmd_supernet, "search": cmd_search, "train": cmd_train, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
