"""End to end: a search running in a background process, ``hwaml dashboard``
serving its journal, and a real headless Chromium rendering the page."""

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

from hwaml_optuna_dashboard.journal import open_storage


def _default_sigint() -> None:
    """Popen preexec: the child gets Ctrl-C's default action even when this test runs in
    a shell's background job (which starts with SIGINT ignored, inherited by children,
    and then Python installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars", "--no-first-run", "--virtual-time-budget=15000"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Debian's chromium is needed by this test: apt-get install -y chromium"
    return exe


def page_text(dom: str) -> str:
    for tag in ("style", "script", "svg"):
        dom = re.sub(rf"<{tag}\b.*?</{tag}>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def mirrored_trials(path) -> int:
    if not path.exists():
        return 0
    summaries = optuna.get_all_study_summaries(open_storage(path))
    return summaries[0].n_trials if summaries else 0


def api_up(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_dashboard_in_chromium_shows_a_running_search(tmp_path):
    run_dir = tmp_path / "live"
    journal = run_dir / "optuna.journal"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    search = subprocess.Popen(
        [sys.executable, "-m", "hwaml.cli", "run", "evaluator=analytic", "evaluator.sleep_s=0.25", "evaluator.fidelity_steps=3",
         "searcher=optuna_tpe", "budget.trials=5000", "+observer=optuna_journal", "name=live", f"hydra.run.dir={run_dir}", "plots=false"],
        # output to files, not pipes nobody reads while the test waits: a full pipe would block the process
        cwd=tmp_path, env=env, stdout=open(tmp_path / "search.log", "w"), stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint,
    )
    port = free_port()
    dashboard = None
    try:
        wait_for(lambda: mirrored_trials(journal) >= 3 or search.poll() is not None, 120, "the search to mirror 3 trials")
        assert search.poll() is None, (tmp_path / "search.log").read_text()[-3000:]
        dashboard = subprocess.Popen(
            [sys.executable, "-m", "hwaml.cli", "dashboard", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=open(tmp_path / "dashboard.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: api_up(base + "/api/studies") or dashboard.poll() is not None, 90, "optuna-dashboard to answer")
        assert dashboard.poll() is None, (tmp_path / "dashboard.log").read_text()[-3000:]
        with urllib.request.urlopen(base + "/api/studies", timeout=5) as r:
            (study,) = json.load(r)["study_summaries"]
        assert study["study_name"] == "live/live"

        before = mirrored_trials(journal)
        dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, "--dump-dom", f"{base}/dashboard/studies/{study['study_id']}/trials"], capture_output=True, text=True, timeout=90).stdout
        after = mirrored_trials(journal)
        shot = tmp_path / "dashboard.png"
        subprocess.run([chromium(), *CHROMIUM_FLAGS, "--window-size=1400,1000", f"--screenshot={shot}", f"{base}/dashboard/studies/{study['study_id']}"], capture_output=True, timeout=90)
        assert search.poll() is None, "the search finished before the page was rendered: it was not watched live"

        text = page_text(dom)
        assert "live/live" in text, text[:2000]
        shown = int(re.search(r"(\d+) Trials", text).group(1))
        assert before <= shown <= after, (before, shown, after)
        assert re.search(r"Trial 0 Complete", text) and "Intermediate Values" in text
        assert "hwaml_status complete" in text  # the trial's user attributes are on the page
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000  # a rendered page, not a blank one

        # the search, interrupted, closes the mirror with its reason and its trial count
        assert search.poll() is None, "the search ended before it could be interrupted"
        os.killpg(search.pid, signal.SIGINT)
        try:
            search.wait(150)  # flush_timeout_s=30; a loaded CI machine is slow
        except subprocess.TimeoutExpired:
            search.send_signal(signal.SIGUSR1)  # hwaml run: every thread's stack to its log
            time.sleep(3)
            raise AssertionError("the interrupted search did not exit in 150 s; its stacks:\n" + (tmp_path / "search.log").read_text()[-6000:])
        study_after = optuna.load_study(study_name="live/live", storage=open_storage(journal))
        assert study_after.user_attrs["stopped_because"] == "interrupted"
        assert len(study_after.trials) >= shown
        # the summary counts what finished before the interrupt (from the run's store)
        counts = study_after.user_attrs["counts"]
        # the trial the interrupt stopped, if it landed inside evaluate; none if it landed while
        # the searcher proposed (TPE's sampling takes a while on a loaded machine)
        assert counts["pending"] in (0, 1), counts
        assert sum(counts.values()) - counts["pending"] == len(study_after.trials)
    finally:
        for proc in (search, dashboard):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
