"""hwaml.background.ProcessQueue: a tracker's writer in a process of its own
(``writer=process``), with BackgroundQueue's semantics."""

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from hwaml import RunContext
from hwaml.background import BackgroundQueue, ProcessQueue, make_queue


@dataclass(frozen=True)
class Ev:
    n: int
    ctx: Any = None
    payload: Any = None


class FileSink:
    """Writes one JSON line per event (with the writer's pid and the event's run dir)."""

    def __init__(self, path, fail=False, hang_s=0.0):
        self.path, self.fail, self.hang_s = str(path), fail, hang_s

    def _handle(self, batch):
        if self.fail:
            raise ConnectionError("tracker down")
        time.sleep(self.hang_s)
        with open(self.path, "a") as f:
            for e in batch:
                f.write(json.dumps({"n": e.n, "pid": os.getpid(), "run_dir": str(e.ctx.run_dir) if e.ctx is not None else None}) + "\n")

    def writer_result(self):
        return {"pid": os.getpid()}


def lines(path):
    p = Path(path)
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []


def test_events_reach_the_writer_process_in_order_with_their_context(tmp_path):
    out = tmp_path / "events.jsonl"
    # a context with live objects (a generator, a closure) that do not travel: the writer gets the plain fields
    ctx = RunContext(cfg=None, run_dir=tmp_path / "run", seed=3, rng=random.Random(0), cost_fn=lambda c: None, objectives={"acc": "max"})
    q = ProcessQueue("t", partial(FileSink, out), maxsize=1000, linger_s=0.05)
    for i in range(40):
        assert q.submit(Ev(i, ctx))
    assert q.close(30.0)
    got = lines(out)
    assert [g["n"] for g in got] == list(range(40))
    assert {g["pid"] for g in got} == {q.result["pid"]} and q.result["pid"] != os.getpid()  # written by another process
    assert {g["run_dir"] for g in got} == {str(tmp_path / "run")}
    assert q.handled == 40 and q.failed == 0 and q.handle_cpu_s > 0


def test_an_event_that_does_not_pickle_is_counted_and_the_others_arrive(tmp_path, caplog):
    out = tmp_path / "events.jsonl"
    q = ProcessQueue("t", partial(FileSink, out), linger_s=0.05)
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        for i in range(6):
            q.submit(Ev(i, None, payload=(lambda: 0) if i == 2 else i))
        assert q.close(30.0)
    assert [g["n"] for g in lines(out)] == [0, 1, 3, 4, 5]
    assert q.unpicklable == 1 and q.handled == 5
    assert "does not pickle" in caplog.text and "1 did not pickle" in caplog.text


def test_a_failing_tracker_in_the_writer_is_counted_and_left_alone(tmp_path):
    q = ProcessQueue("down", partial(FileSink, tmp_path / "x", fail=True), batch_size=1, retry_after_s=60, linger_s=0.2)
    for i in range(5):
        q.submit(Ev(i))
    q.close(30.0)
    assert q.failed == 1 and q.dropped_down == 4 and q.handled == 0  # one try, then skipped for retry_after_s


def test_close_gives_up_on_a_hung_writer_after_its_timeout(tmp_path, caplog):
    q = ProcessQueue("hang", partial(FileSink, tmp_path / "x", hang_s=30), linger_s=0)
    q.submit(Ev(0))
    time.sleep(0.5)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        done = q.close(1.0)
    assert not done and time.perf_counter() - t0 < 10
    assert q.abandoned == 1 and "not recorded" in caplog.text
    assert not q._proc.is_alive()


SCRIPT = textwrap.dedent('''
    import json, os, signal, sys, time
    from dataclasses import dataclass
    from functools import partial
    sys.path.insert(0, {tests!r})
    from test_background_process import Ev, FileSink, lines
    from hwaml.background import ProcessQueue

    def wait_lines(n):
        deadline = time.monotonic() + 60
        while len(lines({out!r})) < n:
            assert time.monotonic() < deadline, lines({out!r})
            time.sleep(0.05)

    if __name__ == "__main__":
        q = ProcessQueue("t", partial(FileSink, {out!r}), linger_s=0)
        for i in range(5):
            q.submit(Ev(i))
        wait_lines(5)
        print(lines({out!r})[0]["pid"], flush=True)
        try:
            os.killpg(0, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        for i in range(5, 10):
            q.submit(Ev(i))
        wait_lines(10)  # the writer ignored the interrupt
        for i in range(10, 200):
            q.submit(Ev(i))
        deadline = time.monotonic() + 60
        while q._outbox.handled < q._outbox.submitted:  # every event handed to the pipe
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 of the search
''')


def test_the_writer_ignores_ctrl_c_and_finishes_its_work_when_the_search_is_killed(tmp_path):
    out = tmp_path / "events.jsonl"
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, start_new_session=True)
    assert proc.returncode == -9, proc.stderr[-3000:]
    writer = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 60
    while True:  # the writer writes what it received, then exits on its own
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the writer process outlived the killed search"
        time.sleep(0.1)
    got = [g["n"] for g in lines(out)]
    assert got[:10] == list(range(10)) and got == sorted(got) and len(got) == len(set(got))
    assert len(got) == 200  # everything the search had handed to the pipe before it was killed


def test_make_queue_names_the_writers():
    assert isinstance(make_queue("thread", "x", print, maxsize=1), BackgroundQueue)
    assert isinstance(make_queue("process", "x", print, partial(FileSink, "/dev/null"), maxsize=1), ProcessQueue)
    with pytest.raises(ValueError, match="writer must be one of"):
        make_queue("threads", "x", print)
    with pytest.raises(ValueError, match="queue_size"):
        ProcessQueue("x", print, maxsize=0)
