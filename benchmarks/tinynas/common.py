"""Shared pieces of the TinyNAS benchmarks: one training recipe for every model,
int8 scoring through TinyEngine, and a TinyNAS search at a memory budget."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

RECIPE = dict(epochs=20, lr=0.05, batch_size=32, label_smoothing=0.1, weight_decay=3e-5)
BENCH_PS_EPOCHS = {"full": 6, "kernel": 2, "depth": [1, 1], "expand": [1, 1]}
#: the main job's (experiment=mcunet_fashion) progressive-shrinking schedule, used on Fashion-MNIST
FASHION_PS_EPOCHS = {"full": 3, "kernel": 1, "depth": 1, "expand": 1}


def data_spec(dataset: str = "digits", train_images: Optional[int] = None, val_images: int = 5000, test_images: Optional[int] = None) -> Dict[str, Any]:
    """The evaluator's ``data`` options for a benchmark (``{}`` for digits, whose
    split is the evaluator's default), so the search and the from-scratch
    training see the same images."""
    if dataset == "digits":
        return {}
    return {"dataset": dataset, "val_images": int(val_images), "train_images": train_images, "test_images": test_images}


def bench_splits(resolution: int, split_seed: int = 0, data: Optional[Dict[str, Any]] = None) -> Any:
    """Train / validation / test splits of a benchmark's data (as the search's evaluator splits them)."""
    from hwaml_tinynas.evaluator import TinyNASDigits

    return TinyNASDigits(data=data or None, seed=split_seed, progress=False).splits(int(resolution))


def train_and_score(model: torch.nn.Module, resolution: int, seed: int = 0, recipe: Optional[Dict[str, Any]] = None, split_seed: int = 0, data: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Train from scratch with the shared recipe; float and int8 test accuracy
    (and the number of misclassified test images), MACs, and TinyEngine's peak
    SRAM / Flash of the trained network.

    ``seed`` drives the initialisation and the batch order; ``split_seed`` fixes
    the train / validation / test split (the same for every model and seed, and
    the one the TinyNAS search used, so its test images were never seen).
    ``data``: :func:`data_spec` (digits when empty). ``val_acc`` (float accuracy
    on the validation split) is what learning rates are tuned on."""
    from hwaml_tinynas.baselines import count_model_macs
    from hwaml_ofa_nas.progressive_shrinking import train_static
    from hwaml_tinyengine import plan_model
    from hwaml_tinyengine.ir import import_model
    from hwaml_tinyengine.quantize import predict_int8, quantize_graph
    r = dict(RECIPE, **(recipe or {}))
    d = bench_splits(resolution, split_seed, data)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train_static(model, d.ofa(), r["epochs"], r["lr"], resolution, batch_size=r["batch_size"], label_smoothing=r["label_smoothing"], weight_decay=r["weight_decay"], seed=seed)
    model.eval()
    with torch.no_grad():
        float_wrong = sum(int((model(d.x_test[i : i + 500]).argmax(1) != d.y_test[i : i + 500]).sum()) for i in range(0, len(d.y_test), 500))
        val_wrong = sum(int((model(d.x_val[i : i + 500]).argmax(1) != d.y_val[i : i + 500]).sum()) for i in range(0, len(d.y_val), 500))
    n_test = int(len(d.y_test))
    qg = quantize_graph(import_model(model, model.input_shape), d.x_train[:128])
    int8_wrong = int((predict_int8(qg, d.x_test) != d.y_test.numpy()).sum())
    plan = plan_model(model, model.input_shape, patch=False)
    return {
        "val_acc": 1.0 - val_wrong / len(d.y_val),
        "float_acc": 1.0 - float_wrong / n_test,
        "int8_acc": 1.0 - int8_wrong / n_test,
        "float_wrong": float_wrong,
        "int8_wrong": int8_wrong,
        "n_test": n_test,
        "mmacs": count_model_macs(model) / 1e6,
        "peak_sram_kb": plan.peak_sram_kb,
        "flash_kb": plan.flash_kb,
        "train_s": time.perf_counter() - t0,
    }


def tinynas_search(
    sram_kb: float,
    flash_kb: float,
    widths,
    resolutions,
    trials: int,
    samples: int,
    seed: int = 0,
    force_space: Optional[tuple] = None,
    profile: str = "stm32f746",
    cache_dir: Optional[str] = None,
    data: Optional[Dict[str, Any]] = None,
    ps_epochs: Optional[Dict[str, Any]] = None,
    ps_batch_size: Optional[int] = None,
    reserve_kb: float = 0.0,
) -> Dict[str, Any]:
    """Run TinyNAS (stage 1, supernet, evolution under the budget) through hwaml's
    loop; returns the best sub-network's config and supernet shape. With
    ``force_space=(w, r)`` stage 1 is skipped (the grid is that one space).

    ``cache_dir``: trained supernets (keyed by shape and training settings) and
    finished searches (keyed by every argument) are kept there, so a budget whose
    stage 1 picks an already trained space, or a benchmark repeating a search
    another one ran, does not train again; the results are the same.
    ``data``: :func:`data_spec`; ``ps_epochs`` / ``ps_batch_size``: the
    progressive-shrinking schedule (default :data:`BENCH_PS_EPOCHS`, the
    evaluator's batch size). ``reserve_kb``: SRAM the backend's ``fits`` keeps
    for the firmware's stack (:func:`stack_reserve_kb`); stage 1 and the search
    then fit the activation arena in ``sram_kb - reserve_kb`` (a
    ``peak_sram_kb`` constraint), so stage 1 counts as fitting exactly what the
    backend accepts."""
    ps_epochs = dict(BENCH_PS_EPOCHS if ps_epochs is None else ps_epochs)
    extra = [] if not data and ps_batch_size is None and not reserve_kb else [data or {}, ps_batch_size] + ([reserve_kb] if reserve_kb else [])
    key = hashlib.sha1(json.dumps([sram_kb, flash_kb, list(widths), list(resolutions), trials, samples, seed, force_space, profile, ps_epochs, *extra], default=str).encode()).hexdigest()[:16]
    if cache_dir is not None:
        done = Path(cache_dir) / f"search_{key}.json"
        if done.is_file():
            log(f"  TinyNAS search loaded from {done}")
            return json.loads(done.read_text())
    from omegaconf import OmegaConf

    from hwaml.builtin import RegularizedEvolution
    from hwaml.loop import SearchLoop
    from hwaml_tinyengine.backend import TinyEngineBackend

    if force_space is not None:
        widths, resolutions = [force_space[0]], [force_space[1]]
    # the budget is the backend's: TinyEngine's profile with its memory overridden.
    # Stage 1 reads it from the run config (the backend's node), as in `hwaml run`.
    backend_args = {"profile": profile, "overrides": {"sram_kb": sram_kb, "flash_kb": flash_kb}, "patch": False}
    cfg = OmegaConf.create({"backend": {"tinynas_bench": {"_target_": "hwaml_tinyengine.backend.TinyEngineBackend", **backend_args}}})
    stage1 = {"widths": list(widths), "resolutions": list(resolutions), "samples_per_space": samples, "min_fit_fraction": 0.0 if force_space else 0.1}
    training: Dict[str, Any] = {"epochs": ps_epochs}
    if ps_batch_size is not None:
        training["batch_size"] = int(ps_batch_size)
    ev = _CachedTinyNAS(cache_dir, stage1=stage1, training=training, data=data or None, progress=False, seed=seed)
    backend = TinyEngineBackend(**backend_args, name="tinynas_bench")
    searcher = RegularizedEvolution(population_size=8, tournament_size=3, mutation_prob=0.2, reject_infeasible=True, max_rejections=50)
    with tempfile.TemporaryDirectory() as tmp:
        loop = SearchLoop(
            components={"searcher": searcher, "evaluator": ev, "backend.tinynas_bench": backend},
            run_dir=Path(tmp),
            objectives={"accuracy": "max"},
            constraints={"fits": {"min": 1}, **({"peak_sram_kb": {"max": sram_kb - reserve_kb}} if reserve_kb else {})},
            budget_trials=trials,
            seed=seed,
            cfg=cfg,
        )
        try:
            res = loop.run()
        finally:
            loop.close()
        n_ok = sum(t.status == "complete" for t in res.trials)
        best = res.best
        chosen = ev.space_opt.chosen
        out = {
            "config": None if best is None else dict(best.config),
            "arch": ev.supernet().arch.to_dict(),
            "width": ev.space_opt.width,
            "resolution": ev.space_opt.resolution,
            "supernet_acc": None if best is None else best.metrics["accuracy"],
            "feasible_trials": n_ok,
            "trials": len(res.trials),
            "space_fit": f"{chosen.n_fit}/{chosen.n_sampled}",
            "space_mean_mmacs": chosen.mean_fit_macs / 1e6,
        }
    if cache_dir is not None:
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(out, indent=1))
    return out


def stack_reserve_kb() -> float:
    """The stack TinyEngine's ``fits`` adds to the activation arena (KB)."""
    from hwaml_tinyengine.firmware import STACK_MIN_BYTES

    return STACK_MIN_BYTES / 1024.0


def log(msg: str) -> None:
    """Progress on stderr, flushed (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def append_csv(path: Optional[str], row: Dict[str, Any]) -> None:
    """Append one row to ``path`` (header written when the file is new)."""
    if not path:
        return
    p = Path(path)
    new = not p.is_file() or p.stat().st_size == 0
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def read_csv(paths) -> list:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def _make_cached_class():
    from hwaml_tinynas.evaluator import TinyNASDigits
    from hwaml_tinynas.training import SUPERNET_META, SUPERNET_WEIGHTS

    class CachedTinyNAS(TinyNASDigits):
        """TinyNASDigits whose trained supernets are shared through a cache folder
        (the two files of a saved supernet: tensors and their JSON)."""

        def __init__(self, cache_dir: Optional[str], **kwargs: Any):
            super().__init__(**kwargs)
            self.cache_dir = cache_dir

        def load_or_train_supernet(self, arch: Any, state: Path, train: bool) -> Any:
            if not self.cache_dir:
                return super().load_or_train_supernet(arch, state, train)
            key = hashlib.sha1(json.dumps([arch.to_dict(), self.supernet_settings()], sort_keys=True, default=str).encode()).hexdigest()[:16]
            cached = {name: Path(self.cache_dir) / f"supernet_{key}{Path(name).suffix}" for name in (SUPERNET_WEIGHTS, SUPERNET_META)}
            state.mkdir(parents=True, exist_ok=True)
            if all(p.is_file() for p in cached.values()) and not (state / SUPERNET_META).is_file():
                for name, p in cached.items():
                    shutil.copy(p, state / name)
                log(f"  supernet w{arch.width_mult:g}-r{arch.resolutions[0]} loaded from {cached[SUPERNET_WEIGHTS]}")
            else:
                log(f"  training the supernet w{arch.width_mult:g}-r{arch.resolutions[0]} (progressive shrinking)")
            net = super().load_or_train_supernet(arch, state, train)
            if not all(p.is_file() for p in cached.values()):
                Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
                for name, p in cached.items():
                    shutil.copy(state / name, p)
            return net

    return CachedTinyNAS


def _CachedTinyNAS(cache_dir: Optional[str], **kwargs: Any) -> Any:
    return _make_cached_class()(cache_dir, **kwargs)
