"""Design reports: a JSON summary and a DRAM-traffic plot of one accelerator design."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from .arch import SparchConfig, area_breakdown
from .simulator import DRAM_CATEGORIES, SimResult

__all__ = ["write_design_report", "plot_dram_breakdown"]


def plot_dram_breakdown(sparch: Sequence[SimResult], baseline: Sequence[SimResult], path: Path, title: str = "") -> Path:
    """Stacked bars of DRAM traffic per category: OuterSPACE and SpArch per matrix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r.name for r in sparch]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) + 2), 4.5))
    colors = plt.get_cmap("tab10").colors
    for offset, results, label, hatch in ((-0.2, baseline, "OuterSPACE", "//"), (0.2, sparch, "SpArch", "")):
        bottom = np.zeros(len(names))
        for ci, cat in enumerate(DRAM_CATEGORIES):
            vals = np.array([r.dram[cat] for r in results]) / 1e6
            ax.bar(x + offset, vals, 0.38, bottom=bottom, color=colors[ci], hatch=hatch, edgecolor="black", linewidth=0.4, label=f"{cat}" if label == "SpArch" else None)
            bottom += vals
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("DRAM traffic (MB)")
    ax.set_title((title or "DRAM traffic by category") + "\nleft, hatched: OuterSPACE model; right: SpArch", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_design_report(
    out_dir: Path,
    stem: str,
    cfg: SparchConfig,
    sparch: Sequence[SimResult],
    baseline: Sequence[SimResult],
    metrics: Mapping[str, float],
    candidate_config: Mapping[str, Any],
    matrix_stats: Sequence[Mapping[str, Any]] = (),
) -> Dict[str, str]:
    """Write ``<stem>.json`` and ``<stem>.png`` under ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_matrix: List[Dict[str, Any]] = []
    stats = list(matrix_stats) or [{}] * len(sparch)
    for s, b, st in zip(sparch, baseline, stats):
        per_matrix.append(
            {
                "name": s.name,
                "matrix_stats": dict(st),
                "bound": s.stats.get("bound"),
                "bound_passes": s.stats.get("bound_passes"),
                "sparch": s.summary(),
                "outerspace": b.summary(),
                "dram_reduction": b.dram_bytes / s.dram_bytes if s.dram_bytes else None,
                "speedup": b.cycles / s.cycles if s.cycles else None,
            }
        )
    report = {
        "candidate": dict(candidate_config),
        "architecture": cfg.to_dict(),
        "area_mm2": area_breakdown(cfg),
        "metrics": dict(metrics),
        "matrices": per_matrix,
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=2, default=float))
    png_path = plot_dram_breakdown(sparch, baseline, out_dir / f"{stem}.png", title=f"{stem}: DRAM traffic")
    return {"report": str(json_path), "plot": str(png_path)}
