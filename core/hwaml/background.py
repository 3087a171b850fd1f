"""A bounded queue drained by one background thread.

An observer's hook only puts an event on the queue (microseconds), so a slow or
unreachable tracker never slows or stalls the search: when the queue is full
the event is dropped and counted; an error while handling events is a warning;
after a failure the sink is left alone for ``retry_after_s`` (its events are
dropped and counted) instead of being retried on every event; ``close`` waits
for the queue to drain for at most ``timeout_s``.

Every hwaml tracker (hwaml-mlflow, hwaml-tensorboard, hwaml-optuna-dashboard) writes
through one; a third-party observer should too.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Mapping

_STOP = object()


class BackgroundQueue:
    """Events -> ``handle(batch)`` in a daemon thread, at most ``batch_size`` at a time."""

    def __init__(self, name: str, handle: Callable[[List[Any]], None], maxsize: int = 1000, batch_size: int = 100, retry_after_s: float = 30.0, linger_s: float = 0.05, logger: logging.Logger | None = None):
        if int(maxsize) < 1:
            raise ValueError(f"{name}: queue_size must be >= 1, got {maxsize}")
        self.name = name
        self._handle = handle
        self._queue: "queue.Queue[Any]" = queue.Queue(int(maxsize))
        self._batch_size = max(1, int(batch_size))
        self._retry_after_s = float(retry_after_s)
        # after the first event of a batch, wait this long for more: fewer, larger batches
        # (one request / one locked append for many trials) at the price of that much latency
        self._linger_s = float(linger_s)
        self._abandoned = False
        self._log = logger or logging.getLogger("hwaml")
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self.submitted = 0
        self.handled = 0
        self.dropped_full = 0  # the queue was full (the tracker is slower than the search)
        self.dropped_down = 0  # the tracker had just failed; events skipped until retry_after_s passed
        self.failed = 0  # events in batches whose handling raised
        self.abandoned = 0  # still queued when close() timed out
        self.handle_s = 0.0  # wall time the background thread spent in handle()
        self.handle_cpu_s = 0.0  # CPU time of the background thread in handle() (what it takes from the search)

    # -- the search's side: never blocks -------------------------------------------------

    def submit(self, event: Any) -> bool:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"hwaml-{self.name}", daemon=True)
                    self._thread.start()
        self.submitted += 1
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self.dropped_full += 1
            if self.dropped_full == 1 or self.dropped_full % 1000 == 0:
                self._log.warning("%s: queue full (%d events), %d event(s) dropped so far: the tracker is slower than the search", self.name, self._queue.maxsize, self.dropped_full)
            return False

    def close(self, timeout_s: float) -> bool:
        """Stop after the queued events are handled; wait at most ``timeout_s``.
        Returns whether everything queued was handled in time."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + float(timeout_s)
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = not self._thread.is_alive()
        if not done:
            self._abandoned = True  # the thread drops what is left instead of working on after the run
            self._log.warning("%s: still busy after the %.0f s flush timeout (%d more event(s) queued); giving up on them (the search is not held up)", self.name, float(timeout_s), self._queue.qsize())
        lost = self.dropped_full + self.dropped_down + self.failed + (self._queue.qsize() if not done else 0)
        if lost:
            self._log.warning(
                "%s: %d of %d event(s) not recorded (%d dropped on a full queue, %d skipped while the tracker was down, %d failed%s)",
                self.name, lost, self.submitted, self.dropped_full, self.dropped_down, self.failed,
                f", {self._queue.qsize()} abandoned at the flush timeout" if not done else "",
            )
        return done

    # -- the background thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            if self._linger_s > 0 and self._queue.qsize() < self._batch_size:
                time.sleep(self._linger_s)
            batch = [first]
            stop = False
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._dispatch(batch)
            if stop:
                return

    def _dispatch(self, batch: List[Any]) -> None:
        if self._abandoned:
            self.abandoned += len(batch)
            return
        if time.monotonic() < self._down_until:
            # the finishing event still gets its try: it closes the tracker's run
            keep = [e for e in batch if getattr(e, "always", False)]
            self.dropped_down += len(batch) - len(keep)
            batch = keep
            if not batch:
                return
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            self._handle(batch)
            self.handled += len(batch)
        except Exception as exc:  # noqa: BLE001 -- any error of a tracker client is a warning, never the search's failure
            self.failed += len(batch)
            self._down_until = time.monotonic() + self._retry_after_s
            self._log.warning("%s: %s: %s (%d event(s) lost; next try in %.0f s)", self.name, type(exc).__name__, str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "", len(batch), self._retry_after_s)
        finally:
            self.handle_s += time.perf_counter() - t0
            self.handle_cpu_s += time.thread_time() - c0


def finite_metrics(values: Mapping[str, Any]) -> Dict[str, float]:
    """The entries of ``values`` that are finite numbers, as floats (what a tracker
    can log: a failed trial's NaN or a non-numeric entry is left out)."""
    out: Dict[str, float] = {}
    for k, v in (values or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[str(k)] = f
    return out
