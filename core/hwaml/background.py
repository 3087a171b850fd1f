"""A bounded queue drained by one background thread.

An observer's hook only puts an event on the queue (microseconds), so a slow or
unreachable tracker never slows or stalls the search: when the queue is full
the event is dropped and counted; an error while handling events is a warning;
after a failure the sink is left alone for ``retry_after_s`` (its events are
dropped and counted) instead of being retried on every event; ``close`` waits
for the queue to drain for at most ``timeout_s``.

Every hwaml tracker (hwaml-mlflow, hwaml-tensorboard, hwaml-optuna-dashboard) writes
through one; a third-party observer should too.

:class:`ProcessQueue` has the same interface and semantics, with the handling in a
separate writer process (the service-process design of Weights & Biases): the
search's process pays only for pickling each event, and the tracker client's own
CPU (MLflow's request encoding, JSON, protobuf) runs on another core instead of
taking the GIL from the search. :func:`make_queue` picks one by name
(``writer: thread | process`` in the trackers' configs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pickle
import queue
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

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


WRITERS = ("thread", "process")


def make_queue(writer: str, name: str, handle: Callable[[List[Any]], None], sink_factory: Optional[Callable[[], Any]] = None, **kwargs: Any) -> Any:
    """A :class:`BackgroundQueue` (``writer="thread"``) calling ``handle``, or a
    :class:`ProcessQueue` (``"process"``) whose writer process builds its sink with
    ``sink_factory()`` (picklable) and calls the sink's ``_handle``."""
    if writer == "thread":
        return BackgroundQueue(name, handle, **kwargs)
    if writer == "process":
        if sink_factory is None:
            raise ValueError(f"{name}: writer=process needs a picklable sink factory")
        return ProcessQueue(name, sink_factory, **kwargs)
    raise ValueError(f"{name}: writer must be one of {WRITERS}, got {writer!r}")


def _portable_ctx(ctx: Any) -> Any:
    """What a writer process needs of a :class:`hwaml.RunContext` (the run's config,
    directory, seed, objectives, constraints and search space), without its live
    objects (random generator, store, closures), which do not pickle."""
    from .types import RunContext

    return RunContext(
        cfg=ctx.cfg, run_dir=ctx.run_dir, seed=ctx.seed, rng=None, device=ctx.device,
        objectives=dict(ctx.objectives), constraints=dict(ctx.constraints), space=ctx.space, threads=ctx.threads,
    )


class ProcessQueue:
    """Events -> ``sink._handle(batch)`` in a writer process (spawned on the first
    event), with :class:`BackgroundQueue`'s semantics: ``submit`` never blocks (a full
    queue drops and counts), batching, skipping a failed tracker for ``retry_after_s``,
    and ``close`` waiting at most ``timeout_s``. The counters that the writer keeps
    (``handled``, ``failed``, ``dropped_down``, ``handle_s``, ``handle_cpu_s``) are
    known once ``close`` returns.

    The search's thread only puts each event on a :class:`BackgroundQueue` (as with
    ``writer=thread``); its thread pickles everything queued within ``linger_s`` in one
    go (an event's ``ctx`` field is replaced by a picklable copy sent once per run
    context) and sends it to the writer in one message: one pipe write per batch. The writer
    ignores Ctrl-C (the terminal sends it to the whole process group: the search's
    own handling decides, and ``close`` flushes) and, when the search's process dies
    (``kill -9``), writes what it had received and exits."""

    def __init__(self, name: str, sink_factory: Callable[[], Any], maxsize: int = 1000, batch_size: int = 100, retry_after_s: float = 30.0, linger_s: float = 0.05, logger: logging.Logger | None = None):
        if int(maxsize) < 1:
            raise ValueError(f"{name}: queue_size must be >= 1, got {maxsize}")
        self.name = name
        self._factory = sink_factory
        self._settings = dict(batch_size=max(1, int(batch_size)), retry_after_s=float(retry_after_s), linger_s=float(linger_s))
        self._log = logger or logging.getLogger("hwaml")
        # the search's side: events, pickled and sent in batches by this queue's thread
        self._outbox = BackgroundQueue(f"{name} (to its writer process)", self._send, maxsize=maxsize, batch_size=max(1000, int(batch_size)),
                                       retry_after_s=retry_after_s, linger_s=linger_s, logger=self._log)
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._ctx_ids: Dict[int, Any] = {}
        self.result: Dict[str, Any] = {}  # what the sink's ``writer_result()`` returned in the writer
        self.submitted = 0
        self.handled = 0
        self.dropped_full = 0
        self.dropped_down = 0
        self.failed = 0
        self.abandoned = 0
        self.unpicklable = 0  # events that could not be sent to the writer process
        self._unpicklable_warned = 0
        self.submit_cpu_s = 0.0  # CPU time the search's thread spent in submit (starting the writer, queueing)
        self.handle_s = 0.0
        self.handle_cpu_s = 0.0

    def _start(self) -> None:
        import multiprocessing as mp

        spawn = mp.get_context("spawn")  # never fork a process whose other threads may hold locks
        self._conn, child = spawn.Pipe(duplex=True)
        self._proc = spawn.Process(
            target=_writer_main, name=f"hwaml-{self.name}", daemon=True,
            args=(self.name, self._factory, child, self._settings, self._log.name),
        )
        self._proc.start()
        child.close()  # the writer sees EOF when this process dies

    def _send(self, batch: List[Any]) -> None:
        """The outbox thread: a batch of events pickled in one go (faster per event than
        one by one, and off the search's thread) and sent in one pipe write."""
        dump, proto = pickle.dumps, pickle.HIGHEST_PROTOCOL
        messages: List[Any] = []
        for event in batch:
            ctx = getattr(event, "ctx", None)
            if ctx is None or not dataclasses.is_dataclass(event):
                messages.append(("event", None, event))
                continue
            key = id(ctx)
            known = self._ctx_ids.get(key)
            if known is None:
                try:  # once per run context (a search space that does not pickle fails here)
                    messages.append(("ctx", key, dump(_portable_ctx(ctx), protocol=proto)))
                    self._ctx_ids[key] = known = (ctx, True)  # held: its id is not reused while the queue lives
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    self._ctx_ids[key] = known = (ctx, False)
                    self._unpicklable(exc)
            if known[1]:
                messages.append(("event", key, dataclasses.replace(event, ctx=None)))
            else:
                self.unpicklable += 1
        try:
            blob = dump(messages, protocol=proto)
        except (pickle.PicklingError, TypeError, AttributeError):  # find the events that do not pickle
            good = []
            for m in messages:
                try:
                    dump(m, protocol=proto)
                    good.append(m)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    self.unpicklable += 1
                    self._unpicklable(exc)
            blob = dump(good, protocol=proto)
        self._conn.send_bytes(blob)

    def _unpicklable(self, exc: BaseException) -> None:
        self._unpicklable_warned += 1
        if self._unpicklable_warned == 1:
            self._log.warning("%s: an event does not pickle for the writer process (%s: %s); such events are not recorded (writer=thread records them)", self.name, type(exc).__name__, exc)

    def submit(self, event: Any) -> bool:
        c0 = time.thread_time()
        if self._proc is None:
            with self._lock:
                if self._proc is None:
                    self._start()
        self.submitted += 1
        try:
            if self._outbox.submit(event):
                return True
            self.dropped_full += 1
            return False
        finally:
            self.submit_cpu_s += time.thread_time() - c0

    def close(self, timeout_s: float) -> bool:
        if self._proc is None:
            return True
        deadline = time.monotonic() + float(timeout_s)
        sent = self._outbox.close(max(0.0, deadline - time.monotonic()))
        stats = None
        try:
            if sent:
                self._conn.send_bytes(pickle.dumps([("stop", None, max(0.0, deadline - time.monotonic()))]))
            if self._conn.poll(max(0.0, deadline - time.monotonic()) + 1.0):
                stats = self._conn.recv()
        except (EOFError, OSError):
            stats = None
        self._proc.join(5.0 if stats is not None else 0.0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        self._conn.close()
        # the outbox's own losses (full while the writer was behind, a dead writer process)
        self.dropped_down += self._outbox.dropped_down
        self.failed += self._outbox.failed
        self.abandoned += self._outbox.abandoned + (self._outbox._queue.qsize() if not sent else 0)
        done = sent and stats is not None and not stats.get("timed_out")
        if stats is not None:
            for k in ("handled", "failed", "dropped_down", "abandoned", "handle_s", "handle_cpu_s"):
                setattr(self, k, getattr(self, k) + stats[k])
            self.result = dict(stats.get("result") or {})
        else:
            self.abandoned = max(self.abandoned, self.submitted - self.dropped_full - self.unpicklable - self.failed - self.dropped_down)
            self._log.warning("%s: the writer process did not report within the %.0f s flush timeout (exit code %s); its events are not confirmed", self.name, float(timeout_s), self._proc.exitcode)
        lost = self.dropped_full + self.dropped_down + self.failed + self.abandoned + self.unpicklable
        if lost:
            self._log.warning(
                "%s: %d of %d event(s) not recorded (%d dropped on a full queue, %d skipped while the tracker was down, %d failed, %d abandoned, %d did not pickle)",
                self.name, lost, self.submitted, self.dropped_full, self.dropped_down, self.failed, self.abandoned, self.unpicklable,
            )
        return done


def _writer_main(name: str, factory: Callable[[], Any], conn: Any, settings: Dict[str, Any], logger_name: str) -> None:
    """The writer process: batches of pickled events from ``conn`` to a
    :class:`BackgroundQueue` on the sink's ``_handle``; the counters (and the sink's
    ``writer_result()``) back through ``conn`` when the search's side stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    log = logging.getLogger(logger_name)
    sink = factory()
    inner = BackgroundQueue(name, sink._handle, maxsize=10**9, logger=log, **settings)
    ctxs: Dict[Any, Any] = {}
    timeout = None
    while timeout is None:
        try:
            batch = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):  # the search's process died: finish what was received
            timeout = 60.0
            break
        for kind, key, payload in batch:
            if kind == "ctx":
                ctxs[key] = pickle.loads(payload)
            elif kind == "event":
                inner.submit(payload if key is None else dataclasses.replace(payload, ctx=ctxs.get(key)))
            else:  # stop: the search's side waits at most ``payload`` seconds
                timeout = float(payload)
    done = inner.close(timeout)
    result_fn = getattr(sink, "writer_result", None)
    stats: Dict[str, Any] = {k: getattr(inner, k) for k in ("handled", "failed", "dropped_down", "abandoned", "handle_s", "handle_cpu_s")}
    stats["timed_out"] = not done
    if not done:
        stats["abandoned"] = max(0, inner.submitted - inner.handled - inner.failed - inner.dropped_down)
    try:
        stats["result"] = result_fn() if result_fn is not None else {}
    except Exception:  # noqa: BLE001 - the counters still go back
        stats["result"] = {}
    try:
        conn.send(stats)
    except OSError:
        pass
    os._exit(0)  # the inner thread may be stuck in a tracker call: do not wait for it


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
