"""Per-trial overhead of the tracker observers vs the loop's own per-trial overhead.

The loop runs the analytic ``nas_toy`` problem with random search (as
benchmarks/core/loop_throughput.py does), every trial committed to SQLite,
once without observers and once with each observer: MLflow against a local
``mlflow server`` (nested runs, and ``trials=steps``), the Optuna journal
mirror, TensorBoard. Rounds are interleaved and the median is reported.

- search s: wall time of ``loop.run()`` (what the search pays; the observers'
  background threads run meanwhile and compete for the GIL and the cores);
- per trial us: search s / trials;
- overhead: (per trial with the observer - per trial without) / per trial
  without, i.e. relative to the loop's own per-trial cost (the goal: < 10%);
- drain s: how long ``run_finished`` waited for the queue to empty (the
  tracker's backlog at the end; bounded by ``flush_timeout_s``);
- recorded: events the tracker received / events submitted.

    python benchmarks/observers/observer_overhead.py [--trials 1000] [--rounds 3] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HWAML_LOAD_PLUGINS", "")  # the loop measured without plugin imports (observers are passed in)
os.environ.setdefault("MPLBACKEND", "Agg")


def start_mlflow_server(root: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        cwd=root, stdout=open(root / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mlflow server did not start")


def run_once(trials: int, tmp: Path, tag: str, observer) -> dict:
    from hwaml import RunSummary
    from hwaml.builtin import AnalyticEvaluator, RandomSearch
    from hwaml.loop import SearchLoop

    components = {"searcher": RandomSearch(max_resample=1), "evaluator": AnalyticEvaluator("nas_toy")}
    if observer is not None:
        components["observer.bench"] = observer
    run_dir = tmp / f"{tag}_{time.monotonic_ns()}"
    loop = SearchLoop(components, run_dir, objectives={"accuracy": "max"}, budget_trials=trials, progress=False)
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    try:
        res = loop.run()
    finally:
        loop.close()
    search = time.perf_counter() - t0
    loop_cpu = time.thread_time() - c0  # the loop runs in this thread
    assert len(res.trials) == trials
    t0, f0 = time.perf_counter(), time.thread_time()
    loop.finish(RunSummary(str(run_dir), trials, {"complete": trials}, None, (), "budget", {}))
    drain = time.perf_counter() - t0
    finish_cpu = time.thread_time() - f0
    # every other thread of this process (an observer's writer thread, a queue's feeder thread) during the
    # search and the drain at its end (a writer thread that falls behind works on after the search), and
    # this thread's own work in run_finished (closing the queue, starting/joining a writer process)
    other_cpu = time.process_time() - p0 - loop_cpu
    out = {"search": search, "drain": drain, "loop_cpu": loop_cpu, "other_cpu": other_cpu, "finish_cpu": finish_cpu}
    if observer is not None:
        q = observer.queue
        out["recorded"] = f"{q.handled}/{q.submitted}"
        out["bg_per_event_us"] = 1e6 * q.handle_s / max(1, q.handled)
        out["writer_cpu_per_trial_us"] = 1e6 * q.handle_cpu_s / trials  # the handler's thread, wherever it runs
        out["submit_cpu_per_trial_us"] = 1e6 * getattr(q, "submit_cpu_s", 0.0) / trials  # pickling in the loop's thread (process writer)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tracking-uri", default=None, help="an MLflow server to use (default: start one on 127.0.0.1)")
    ap.add_argument("--only", nargs="*", default=None, help="variants whose name contains one of these (the loop alone always runs)")
    args = ap.parse_args()
    import logging

    logging.getLogger("hwaml").setLevel(logging.ERROR)

    from hwaml_mlflow import MlflowObserver
    from hwaml_optuna_dashboard import OptunaJournalObserver
    from hwaml_tensorboard import TensorBoardObserver

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server = None
        uri = args.tracking_uri
        if uri is None:
            (tmp / "mlflow").mkdir()
            server, uri = start_mlflow_server(tmp / "mlflow")
        try:
            variants = {
                "none (the loop alone)": lambda: None,
                "mlflow, nested run per trial": lambda: MlflowObserver(tracking_uri=uri, experiment="bench", flush_timeout_s=30),
                "mlflow, trials=steps": lambda: MlflowObserver(tracking_uri=uri, experiment="bench", trials="steps", flush_timeout_s=600),
                "optuna journal mirror": lambda: OptunaJournalObserver(flush_timeout_s=600),
                "tensorboard": lambda: TensorBoardObserver(flush_timeout_s=600),
                "tensorboard, trial_runs=false": lambda: TensorBoardObserver(trial_runs=False, flush_timeout_s=600),
                "mlflow, nested, writer=process": lambda: MlflowObserver(tracking_uri=uri, experiment="bench", flush_timeout_s=30, writer="process"),
                "mlflow, steps, writer=process": lambda: MlflowObserver(tracking_uri=uri, experiment="bench", trials="steps", flush_timeout_s=600, writer="process"),
                "optuna journal, writer=process": lambda: OptunaJournalObserver(flush_timeout_s=600, writer="process"),
                "tensorboard, writer=process": lambda: TensorBoardObserver(flush_timeout_s=600, writer="process"),
            }
            if args.only:
                variants = {k: v for k, v in variants.items() if k.startswith("none") or any(o in k for o in args.only)}
            run_once(50, tmp, "warmup", None)  # imports, SQLite, the server's first requests
            if "mlflow, nested run per trial" in variants:
                run_once(20, tmp, "warmup", variants["mlflow, nested run per trial"]())
            results = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, make in variants.items():
                    results[name].append(run_once(args.trials, tmp, name.split()[0].strip(","), make()))
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(30)

    import mlflow
    import optuna
    import tensorboard

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
          f"mlflow {mlflow.__version__}, optuna {optuna.__version__}, tensorboard {tensorboard.__version__}")
    print(f"{args.trials} trials of analytic nas_toy with random search per run, {args.rounds} interleaved rounds, medians")
    print()
    base = statistics.median(r["search"] for r in results["none (the loop alone)"]) / args.trials
    base_cpu = statistics.median(r["loop_cpu"] for r in results["none (the loop alone)"]) / args.trials
    base_other = statistics.median(r["other_cpu"] for r in results["none (the loop alone)"]) / args.trials
    print(f"the loop's own CPU per trial (its thread, no observer): {base_cpu * 1e6:.0f} us; wall per trial {base * 1e6:.0f} us")
    print()
    print(f"{'observer':<32} {'search s':>9} {'wall ovh':>9} {'drain s':>8} {'recorded':>11} {'search-process CPU us/trial':>28} {'CPU ovh':>8} {'writer CPU us/trial':>20}")
    print("-" * 132)
    for name, rs in results.items():
        search = statistics.median(r["search"] for r in rs)
        per = search / args.trials
        over = (per - base) / base
        drain = statistics.median(r["drain"] for r in rs)
        rec = rs[-1].get("recorded", "-")
        # what the observer takes from the search's process: its share of the other threads' CPU
        # (a writer thread, a queue's feeder thread) plus the pickling it does in the loop's thread
        own = statistics.median(max(0.0, (r["other_cpu"] / args.trials - base_other) * 1e6) + r.get("submit_cpu_per_trial_us", 0.0) for r in rs)
        writer = statistics.median(r.get("writer_cpu_per_trial_us", 0.0) for r in rs)
        print(f"{name:<32} {search:>9.2f} {over * 100:>8.1f}% {drain:>8.2f} {rec:>11} {own:>28.0f} {own / (base_cpu * 1e6) * 100:>7.1f}% {writer:>20.0f}")
    print()
    print("wall ovh = extra search wall time per trial / the loop's own (noisy on a shared machine);")
    print("search-process CPU = the CPU the observer takes from the search's process per trial: its threads (writer, queue feeder)")
    print("  and the pickling it does in the loop's thread (writer=process); CPU ovh = that / the loop thread's own CPU per trial (goal < 10%);")
    print("writer CPU = CPU of the thread that builds and sends the records (in the search's process for writer=thread,")
    print("  in the writer process for writer=process: work moved to another core, not removed); drain = the backlog the end of the run waited for")

if __name__ == "__main__":
    main()
