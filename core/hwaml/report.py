"""Results: ``trials.csv``, ``best.json``, ``pareto.png``, and multirun summaries.

Everything here is rebuilt from the SQLite store, so ``hwaml report RUN_DIR``
gives the same files as the end of the run, and works on a killed run.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .loop import best_trial, pareto_front
from .store import TrialStore
from .types import Trial, TrialStatus


class ReportError(RuntimeError):
    pass


def _flatten_config(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten_config(v, key + "."))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            out[key + ".length"] = len(v)
            for i, x in enumerate(v):
                out.update(_flatten_config(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def write_csv(trials: Sequence[Trial], path: Path) -> Path:
    metric_keys: List[str] = []
    cost_keys: List[str] = []
    config_keys: List[str] = []
    rows = []
    for t in trials:
        flat = _flatten_config(t.config)
        for k in flat:
            if k not in config_keys:
                config_keys.append(k)
        for k in t.metrics:
            if k not in metric_keys:
                metric_keys.append(k)
        for k in t.cost:
            if k not in cost_keys:
                cost_keys.append(k)
        rows.append((t, flat))
    header = ["number", "status", "origin", "duration_s"] + metric_keys + [f"cost.{k}" for k in cost_keys] + [f"config.{k}" for k in config_keys] + ["error"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for t, flat in rows:
            err = (t.error or "").strip().splitlines()
            w.writerow(
                [t.number, t.status, t.candidate.origin, f"{t.duration_s:.6f}"]
                + [t.metrics.get(k, "") for k in metric_keys]
                + [t.cost.get(k, "") for k in cost_keys]
                + [flat.get(k, "") for k in config_keys]
                + [err[-1] if err else ""]
            )
    return path


def _trial_json(t: Trial) -> Dict[str, Any]:
    return {
        "number": t.number,
        "status": t.status,
        "config": t.config,
        "metrics": dict(t.metrics),
        "cost": dict(t.cost),
        "origin": t.candidate.origin,
    }


def summarise(trials: Sequence[Trial], objectives: Mapping[str, str]) -> Dict[str, Any]:
    counts = {s: sum(t.status == s for t in trials) for s in TrialStatus.ALL}
    best = best_trial(trials, objectives)
    front = pareto_front(trials, objectives) if len(objectives) > 1 else ([best] if best else [])
    return {
        "objectives": dict(objectives),
        "best_rule": "lexicographic optimum of the complete trials over the objectives in order (ties: earliest); always on the Pareto front",
        "trials": len(trials),
        "counts": counts,
        "best": _trial_json(best) if best else None,
        "pareto_front": [_trial_json(t) for t in front],
    }


def plot_run(trials: Sequence[Trial], objectives: Mapping[str, str], path: Path, title: str = "") -> Optional[Path]:
    """Scatter of the first two objectives with the Pareto front, or the
    optimisation trace (value per trial and best so far) for one objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [t for t in trials if t.status == TrialStatus.COMPLETE]
    names = list(objectives)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    if len(names) >= 2:
        x, y = names[0], names[1]
        front = sorted(pareto_front(trials, {x: objectives[x], y: objectives[y]}), key=lambda t: t.value(x))
        ax.scatter([t.value(x) for t in ok], [t.value(y) for t in ok], s=14, alpha=0.5, label="complete trials")
        ax.plot([t.value(x) for t in front], [t.value(y) for t in front], "o-", color="crimson", ms=5, label="Pareto front")
        ax.set_xlabel(f"{x} ({objectives[x]})")
        ax.set_ylabel(f"{y} ({objectives[y]})")
    else:
        name = names[0]
        sign = 1.0 if objectives[name] == "max" else -1.0
        xs = [t.number for t in ok]
        ys = [t.value(name) for t in ok]
        ax.scatter(xs, ys, s=14, alpha=0.5, label="complete trials")
        best, trace_x, trace_y = -math.inf, [], []
        for t in ok:
            v = sign * t.value(name)
            if v > best:
                best = v
            trace_x.append(t.number)
            trace_y.append(sign * best)
        ax.step(trace_x, trace_y, where="post", color="crimson", label="best so far")
        bad = [t.number for t in trials if t.status != TrialStatus.COMPLETE]
        if bad and ys:
            ax.scatter(bad, [min(ys)] * len(bad), marker="x", color="grey", s=12, label="infeasible / failed")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{name} ({objectives[name]})")
    ax.set_title(title or "hwaml run")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_run_report(run_dir: Path | str, plots: bool = True) -> Dict[str, Any]:
    """(Re)build trials.csv, best.json and pareto.png of one run from its store."""
    run_dir = Path(run_dir)
    db = run_dir / TrialStore.FILENAME
    if not db.exists():
        raise ReportError(f"{run_dir} has no {TrialStore.FILENAME}: not an hwaml run directory")
    with TrialStore(db) as store:
        trials = store.trials()
        objectives = store.get_meta("objectives") or {"accuracy": "max"}
        deployments = store.deployments()
    summary = summarise(trials, objectives)
    summary["run_dir"] = str(run_dir)
    if deployments:
        summary["deployments"] = deployments
    write_csv(trials, run_dir / "trials.csv")
    (run_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str))
    if plots and trials:
        plot_run(trials, objectives, run_dir / "pareto.png", title=run_dir.name)
    return summary


def _job_overrides(job_dir: Path) -> str:
    p = job_dir / ".hydra" / "overrides.yaml"
    if not p.exists():
        return ""
    import yaml  # PyYAML comes with Hydra

    items = yaml.safe_load(p.read_text()) or []
    return " ".join(str(i) for i in items)


def find_runs(directory: Path) -> List[Path]:
    return sorted({p.parent for p in Path(directory).rglob(TrialStore.FILENAME)}, key=lambda p: str(p))


def write_multirun_report(sweep_dir: Path | str, plots: bool = True) -> List[Dict[str, Any]]:
    """One table (summary.csv, printed) and one plot across all jobs of a multirun."""
    sweep_dir = Path(sweep_dir)
    runs = find_runs(sweep_dir)
    if not runs:
        raise ReportError(f"no hwaml runs (no {TrialStore.FILENAME}) under {sweep_dir}")
    rows = []
    for run in runs:
        s = write_run_report(run, plots=plots)
        best = s["best"] or {}
        row = {
            "job": str(run.relative_to(sweep_dir)) if run != sweep_dir else ".",
            "overrides": _job_overrides(run),
            "trials": s["trials"],
            "complete": s["counts"][TrialStatus.COMPLETE],
            "infeasible": s["counts"][TrialStatus.INFEASIBLE],
            "failed": s["counts"][TrialStatus.FAILED],
            "pruned": s["counts"][TrialStatus.PRUNED],
            "best_trial": best.get("number", ""),
        }
        for k in s["objectives"]:
            v = (best.get("metrics") or {}).get(k, (best.get("cost") or {}).get(k, ""))
            row[k] = v
        for k, v in (best.get("cost") or {}).items():
            row.setdefault(f"cost.{k}", v)
        rows.append(row)
    keys: List[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    with open(sweep_dir / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    if plots:
        _plot_sweep(runs, sweep_dir / "summary.png")
    return rows


def _plot_sweep(runs: Sequence[Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for run in runs:
        with TrialStore(run / TrialStore.FILENAME) as store:
            trials = store.trials()
            objectives = store.get_meta("objectives") or {"accuracy": "max"}
        name, direction = next(iter(objectives.items()))
        sign = 1.0 if direction == "max" else -1.0
        best, xs, ys = -math.inf, [], []
        for t in trials:
            if t.status == TrialStatus.COMPLETE:
                best = max(best, sign * t.value(name))
            if best > -math.inf:
                xs.append(t.number)
                ys.append(sign * best)
        label = _job_overrides(run) or run.name
        ax.step(xs, ys, where="post", label=label[:60])
    ax.set_xlabel("trial")
    ax.set_ylabel(f"best {name} so far")
    ax.set_title("multirun: best so far per job")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    keys: List[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = "  ".join(k.ljust(w) for k, w in zip(keys, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])
