"""TinyNAS stage 1: optimise the search space for the device.

MCUNet (Lin et al., NeurIPS 2020, Sec. 3.1): a search space ``S(w, r)`` is the
sub-network space of the backbone at width multiplier ``w`` and input
resolution ``r``. For every space of a grid, sample ``m`` sub-networks, keep
those that fit the device's memory - peak SRAM and Flash as TinyEngine plans
them - and look at the cumulative distribution of their MACs. Under the same
memory, a model with more computation tends to be more accurate, so the space
whose *satisfying* models have the highest mean MACs is chosen.

The fit test is TinyEngine's own: the model is imported into its IR and
planned (whole-network scheduling, in-place depthwise, patch-based inference
when the backend uses it), exactly as the ``cost`` hook of the backend would;
the plain whole-network plan is tried first because patching never raises the
peak, so a model that fits without patches fits, and one whose Flash is over
the limit is out whatever the patches.

Outputs (:meth:`SpaceOptimization.save`): ``space_opt.json`` (everything),
``space_opt.csv`` (one row per space), ``space_opt_samples.csv`` (one row per
sampled model) and ``space_opt.png`` (the MACs CDF of every space).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

log = logging.getLogger("hwaml.tinynas")

__all__ = ["SpaceStats", "SpaceOptimization", "memory_fit", "sample_space", "optimize_search_space"]


@dataclass
class SpaceStats:
    """The sampled models of one space ``S(width, resolution)``."""

    width: float
    resolution: int
    macs: List[int] = field(default_factory=list)
    fits: List[bool] = field(default_factory=list)
    peak_sram_kb: List[float] = field(default_factory=list)
    flash_kb: List[float] = field(default_factory=list)

    @property
    def n_sampled(self) -> int:
        return len(self.macs)

    @property
    def n_fit(self) -> int:
        return int(sum(self.fits))

    @property
    def fit_fraction(self) -> float:
        return self.n_fit / max(1, self.n_sampled)

    @property
    def fit_macs(self) -> np.ndarray:
        return np.asarray([m for m, f in zip(self.macs, self.fits) if f], dtype=float)

    @property
    def mean_fit_macs(self) -> float:
        """Mean MACs of the satisfying models (the selection score); NaN when none fits."""
        m = self.fit_macs
        return float(m.mean()) if len(m) else math.nan

    def quantile_fit_macs(self, q: float) -> float:
        m = self.fit_macs
        return float(np.quantile(m, q)) if len(m) else math.nan

    def row(self) -> Dict[str, Any]:
        return {
            "width": self.width,
            "resolution": self.resolution,
            "n_sampled": self.n_sampled,
            "n_fit": self.n_fit,
            "fit_fraction": round(self.fit_fraction, 4),
            "mean_fit_mmacs": round(self.mean_fit_macs / 1e6, 4) if self.n_fit else "",
            "p10_fit_mmacs": round(self.quantile_fit_macs(0.1) / 1e6, 4) if self.n_fit else "",
            "p50_fit_mmacs": round(self.quantile_fit_macs(0.5) / 1e6, 4) if self.n_fit else "",
            "p90_fit_mmacs": round(self.quantile_fit_macs(0.9) / 1e6, 4) if self.n_fit else "",
            "max_fit_mmacs": round(float(self.fit_macs.max()) / 1e6, 4) if self.n_fit else "",
        }


@dataclass
class SpaceOptimization:
    """The result of stage 1: every space's statistics and the chosen one."""

    spaces: List[SpaceStats]
    width: float
    resolution: int
    sram_limit_kb: float
    flash_limit_kb: float
    settings: Dict[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> SpaceStats:
        return next(s for s in self.spaces if s.width == self.width and s.resolution == self.resolution)

    def table(self) -> str:
        """The per-space table as aligned text (the chosen space marked ``*``)."""
        rows = [s.row() for s in self.spaces]
        keys = list(rows[0])
        lines = ["  ".join(f"{k:>14}" for k in ["", *keys])]
        for s, r in zip(self.spaces, rows):
            mark = "*" if (s.width, s.resolution) == (self.width, self.resolution) else ""
            lines.append("  ".join(f"{str(v):>14}" for v in [mark, *r.values()]))
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "width": self.width,
            "resolution": self.resolution,
            "sram_limit_kb": self.sram_limit_kb,
            "flash_limit_kb": self.flash_limit_kb,
            "settings": self.settings,
            "spaces": [asdict(s) for s in self.spaces],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SpaceOptimization":
        spaces = [SpaceStats(**s) for s in d["spaces"]]
        return cls(spaces, float(d["width"]), int(d["resolution"]), float(d["sram_limit_kb"]), float(d["flash_limit_kb"]), dict(d.get("settings", {})))

    @classmethod
    def load(cls, path: Any) -> "SpaceOptimization":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a TinyNAS space-optimisation result: {exc}") from exc

    def save(self, directory: Any, plot: bool = True) -> Dict[str, str]:
        """Write ``space_opt.json``, ``space_opt.csv``, ``space_opt_samples.csv``
        and (``plot``) ``space_opt.png`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": out / "space_opt.json", "csv": out / "space_opt.csv", "samples": out / "space_opt_samples.csv"}
        tmp = files["json"].with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(files["json"])
        with open(files["csv"], "w", newline="") as fh:
            rows = [{**s.row(), "chosen": int((s.width, s.resolution) == (self.width, self.resolution))} for s in self.spaces]
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        with open(files["samples"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["width", "resolution", "sample", "mmacs", "peak_sram_kb", "flash_kb", "fits"])
            for s in self.spaces:
                for i, (m, f, p, fl) in enumerate(zip(s.macs, s.fits, s.peak_sram_kb, s.flash_kb)):
                    w.writerow([s.width, s.resolution, i, round(m / 1e6, 5), round(p, 3), round(fl, 3), int(f)])
        if plot:
            files["png"] = out / "space_opt.png"
            self.plot(files["png"])
        return {k: str(v) for k, v in files.items()}

    def plot(self, path: Any) -> None:
        """Cumulative MACs distribution of the satisfying models of every space (MCUNet Fig. 3)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        cmap = plt.get_cmap("viridis")
        fitting = [s for s in self.spaces if s.n_fit]
        for i, s in enumerate(fitting):
            m = np.sort(s.fit_macs) / 1e6
            cdf = np.arange(1, len(m) + 1) / len(m)
            chosen = (s.width, s.resolution) == (self.width, self.resolution)
            ax.step(
                m,
                cdf,
                where="post",
                color="crimson" if chosen else cmap(i / max(1, len(fitting) - 1)),
                lw=2.6 if chosen else 1.1,
                label=f"w{s.width:g}-r{s.resolution} (mean {s.mean_fit_macs / 1e6:.2f}M, {s.fit_fraction:.0%} fit)" + (" *" if chosen else ""),
            )
        ax.set_xlabel("MMACs of models that fit")
        ax.set_ylabel("cumulative probability")
        ax.set_title(f"TinyNAS search-space optimisation (SRAM <= {self.sram_limit_kb:g} KB, Flash <= {self.flash_limit_kb:g} KB)")
        ax.grid(alpha=0.3)
        if fitting:
            ax.legend(fontsize=6, loc="lower right", ncol=2 if len(fitting) > 10 else 1)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def memory_fit(model: Any, input_shape: Sequence[int], sram_kb: float, flash_kb: float, patch: bool = True, max_overhead: float = 0.3) -> Tuple[bool, float, float]:
    """``(fits, peak_sram_kb, flash_kb)`` of a model as TinyEngine plans it.

    ``peak_sram_kb`` is that of the plan that decided: the plain whole-network
    plan when it already fits or Flash is over (an upper bound of the patched
    peak), the patch-searched plan otherwise.
    """
    from hwaml_tinyengine.ir import import_model
    from hwaml_tinyengine.memory_planner import plan_memory

    g = import_model(model, tuple(int(s) for s in input_shape))
    plain = plan_memory(g, patch=False)
    if plain.flash_kb > flash_kb:
        return False, plain.peak_sram_kb, plain.flash_kb
    if plain.peak_sram_kb <= sram_kb or not patch:
        return plain.peak_sram_kb <= sram_kb, plain.peak_sram_kb, plain.flash_kb
    best = plan_memory(g, patch=True, max_overhead=max_overhead)
    return best.peak_sram_kb <= sram_kb, best.peak_sram_kb, best.flash_kb


def sample_space(base: Any, width: float, resolution: int, n: int, seed: int) -> List[Dict[str, Any]]:
    """``n`` sub-network configurations drawn uniformly from ``S(width, resolution)``."""
    from hwaml_ofa_nas.supernet import OFAMobileNetV3

    from .supernet import space_arch

    arch = space_arch(base, width, resolution)
    rng = np.random.default_rng([int(seed), int(resolution), int(round(width * 1000))])
    space = OFAMobileNetV3.space_for(arch)
    return [space.sample(rng) for _ in range(int(n))]


def _evaluate_space(job: Mapping[str, Any]) -> SpaceStats:
    import torch

    from hwaml_ofa_nas.predictors import count_macs

    from .supernet import space_arch, static_subnet

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    arch = space_arch(job["base"], job["width"], job["resolution"])
    stats = SpaceStats(float(job["width"]), int(job["resolution"]))
    for cfg in sample_space(job["base"], job["width"], job["resolution"], job["n"], job["seed"]):
        model = static_subnet(arch, cfg).eval()
        fits, peak, flash = memory_fit(model, model.input_shape, job["sram_kb"], job["flash_kb"], job["patch"], job["max_overhead"])
        stats.macs.append(int(count_macs(arch, cfg)))
        stats.fits.append(bool(fits))
        stats.peak_sram_kb.append(float(peak))
        stats.flash_kb.append(float(flash))
    return stats


def optimize_search_space(
    base: Any,
    widths: Sequence[float],
    resolutions: Sequence[int],
    sram_kb: float,
    flash_kb: float,
    samples_per_space: int = 100,
    seed: int = 0,
    patch: bool = True,
    max_overhead: float = 0.3,
    min_fit_fraction: float = 0.0,
    workers: int = 1,
    progress: bool = True,
    threads: int = 1,
) -> SpaceOptimization:
    """Run stage 1 over the grid ``widths x resolutions`` and choose a space.

    :param sram_kb, flash_kb: the memory a model must fit (the device's, or tighter constraints).
    :param samples_per_space: models sampled per space (MCUNet samples thousands).
    :param min_fit_fraction: a space qualifies only if at least this fraction of its
        samples fits (0: the paper's pure mean-MACs rule; a small value keeps a space
        where one lucky sample fits from winning).
    :param workers: processes (each plans whole spaces).
    """
    from hwaml.progress import bar as progress_bar

    if not widths or not resolutions:
        raise ValueError("widths and resolutions must be non-empty")
    if samples_per_space < 1:
        raise ValueError(f"samples_per_space must be >= 1, got {samples_per_space}")
    jobs = [
        dict(base=base, width=float(w), resolution=int(r), n=int(samples_per_space), seed=int(seed), sram_kb=float(sram_kb), flash_kb=float(flash_kb), patch=bool(patch), max_overhead=float(max_overhead), threads=threads)
        for w in sorted(widths)
        for r in sorted(resolutions)
    ]
    bar = progress_bar(total=len(jobs), desc="TinyNAS stage 1 (spaces)", enabled=progress)
    results: List[SpaceStats] = []
    if workers and workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers), mp_context=mp.get_context("spawn")) as pool:
            for stats in pool.map(_evaluate_space, jobs):
                results.append(stats)
                bar.update(1)
    else:
        for job in jobs:
            results.append(_evaluate_space(job))
            bar.update(1)
    bar.close()
    qualified = [s for s in results if s.n_fit and s.fit_fraction >= min_fit_fraction]
    if not qualified:
        raise ValueError(
            f"no search space has models that fit SRAM <= {sram_kb:g} KB and Flash <= {flash_kb:g} KB "
            f"(min_fit_fraction={min_fit_fraction}); try smaller widths/resolutions"
        )
    best = max(qualified, key=lambda s: (s.mean_fit_macs, -s.width, -s.resolution))
    from .supernet import base_arch

    settings = dict(base=base if isinstance(base, str) else base_arch(base).to_dict(), widths=sorted(float(w) for w in widths), resolutions=sorted(int(r) for r in resolutions), samples_per_space=int(samples_per_space), seed=int(seed), patch=bool(patch), max_overhead=float(max_overhead), min_fit_fraction=float(min_fit_fraction))
    result = SpaceOptimization(results, best.width, best.resolution, float(sram_kb), float(flash_kb), settings)
    log.info("TinyNAS stage 1: chose w=%g r=%d (mean MACs of fitting models %.3fM, %d/%d fit)\n%s", best.width, best.resolution, best.mean_fit_macs / 1e6, best.n_fit, best.n_sampled, result.table())
    return result
