"""hwaml.background.BackgroundQueue: what every tracker writes through."""

import logging
import threading
import time

import pytest

from hwaml.background import BackgroundQueue


def test_events_are_handled_in_batches_in_order():
    seen = []
    q = BackgroundQueue("t", seen.append, maxsize=100, batch_size=10)
    for i in range(35):
        assert q.submit(i)
    assert q.close(5.0)
    assert [e for batch in seen for e in batch] == list(range(35))
    assert all(len(b) <= 10 for b in seen) and q.handled == 35


def test_a_full_queue_drops_and_counts_without_blocking(caplog):
    gate = threading.Event()
    q = BackgroundQueue("slow", lambda batch: gate.wait(5), maxsize=3, batch_size=1)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        results = [q.submit(i) for i in range(50)]
    assert time.perf_counter() - t0 < 1.0  # the search never waits for the tracker
    assert not all(results) and q.dropped_full >= 40
    assert "queue full" in caplog.text
    gate.set()
    q.close(5.0)


def test_a_failing_tracker_is_a_warning_and_is_left_alone_for_a_while(caplog):
    calls = []

    def handle(batch):
        calls.append(list(batch))
        raise ConnectionError("tracker down")

    q = BackgroundQueue("down", handle, maxsize=100, batch_size=1, retry_after_s=60, linger_s=0)
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        for i in range(5):
            q.submit(i)
        q.close(5.0)
    assert len(calls) == 1  # one try, then skipped for retry_after_s
    assert q.failed == 1 and q.dropped_down == 4
    assert "ConnectionError: tracker down" in caplog.text and "not recorded" in caplog.text


def test_close_gives_up_after_its_timeout(caplog):
    q = BackgroundQueue("hang", lambda batch: time.sleep(3), maxsize=10, batch_size=1)
    q.submit(0)
    q.submit(1)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="hwaml"):
        done = q.close(0.3)
    assert not done and time.perf_counter() - t0 < 1.5
    assert "giving up" in caplog.text


def test_bad_size():
    with pytest.raises(ValueError, match="queue_size"):
        BackgroundQueue("x", print, maxsize=0)
