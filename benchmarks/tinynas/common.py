"""Shared pieces of the TinyNAS benchmarks: one training recipe for every model,
int8 scoring through TinyEngine, and a TinyNAS search at a memory budget."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

RECIPE = dict(epochs=30, lr=0.05, batch_size=64, label_smoothing=0.1, weight_decay=3e-5)
BENCH_PS_EPOCHS = {"full": 8, "kernel": 2, "depth": [1, 2], "expand": [1, 2]}


def train_and_score(model: torch.nn.Module, resolution: int, seed: int = 0, recipe: Optional[Dict[str, Any]] = None) -> Dict[str, float]:
    """Train from scratch with the shared recipe; float and int8 test accuracy,
    and TinyEngine's peak SRAM / Flash of the trained network."""
    from hwaml_ofa_nas.progressive_shrinking import train_static
    from hwaml_tinyengine import plan_model
    from hwaml_tinyengine.ir import import_model
    from hwaml_tinyengine.quantize import predict_int8, quantize_graph
    from hwaml_tinynas.data import digits_splits

    r = dict(RECIPE, **(recipe or {}))
    d = digits_splits(resolution, seed)
    t0 = time.perf_counter()
    train_static(model, d.ofa(), r["epochs"], r["lr"], resolution, batch_size=r["batch_size"], label_smoothing=r["label_smoothing"], weight_decay=r["weight_decay"], seed=seed)
    model.eval()
    with torch.no_grad():
        float_acc = float((model(d.x_test).argmax(1) == d.y_test).double().mean())
    qg = quantize_graph(import_model(model, model.input_shape), d.x_train[:128])
    int8_acc = float((predict_int8(qg, d.x_test) == d.y_test.numpy()).mean())
    plan = plan_model(model, model.input_shape, patch=False)
    return {"float_acc": float_acc, "int8_acc": int8_acc, "peak_sram_kb": plan.peak_sram_kb, "flash_kb": plan.flash_kb, "train_s": time.perf_counter() - t0}


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
) -> Dict[str, Any]:
    """Run TinyNAS (stage 1, supernet, evolution under the budget) through hwaml's
    loop; returns the best sub-network's config and supernet shape. With
    ``force_space=(w, r)`` stage 1 is skipped (the grid is that one space)."""
    from omegaconf import OmegaConf

    from hwaml.builtin import RegularizedEvolution
    from hwaml.testing import run_search  # noqa: F401 (same loop as hwaml run)
    from hwaml.loop import SearchLoop
    from hwaml_tinynas.backend import TinyNASBackend
    from hwaml_tinynas.evaluator import TinyNASDigits

    if force_space is not None:
        widths, resolutions = [force_space[0]], [force_space[1]]
    node = {"_target_": "hwaml_tinynas.backend.TinyNASBackend", "profile": profile, "patch": False, "sram_kb": sram_kb, "flash_kb": flash_kb}
    cfg = OmegaConf.create({"backend": {"tinynas_bench": node}})
    ev = TinyNASDigits(widths=list(widths), resolutions=list(resolutions), samples_per_space=samples, min_fit_fraction=0.0 if force_space else 0.1, epochs=BENCH_PS_EPOCHS, progress=False, seed=seed)
    backend = TinyNASBackend(profile=profile, patch=False, sram_kb=sram_kb, flash_kb=flash_kb)
    searcher = RegularizedEvolution(population_size=8, tournament_size=3, mutation_prob=0.2, reject_infeasible=True, max_rejections=50)
    with tempfile.TemporaryDirectory() as tmp:
        loop = SearchLoop(
            components={"searcher": searcher, "evaluator": ev, "backend.tinynas_bench": backend},
            run_dir=Path(tmp),
            objectives={"accuracy": "max"},
            constraints={"fits": {"min": 1}},
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
        return {
            "config": None if best is None else dict(best.config),
            "arch": ev.arch.to_dict(),
            "width": ev.space_opt.width,
            "resolution": ev.space_opt.resolution,
            "supernet_acc": None if best is None else best.metrics["accuracy"],
            "feasible_trials": n_ok,
            "trials": len(res.trials),
        }
