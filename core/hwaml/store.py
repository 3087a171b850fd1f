"""The durable trial store: one SQLite file in the run directory.

Every proposal is written (status ``pending``) before it is evaluated and every
result is committed before the next proposal, so a run killed at any moment
(``kill -9`` included) resumes with ``resume=true``: finished trials are read back,
pending ones are run again from their stored configuration, and nothing finished
is evaluated twice.

The database runs in WAL mode. With ``synchronous=NORMAL`` (the default) a
committed trial survives the death of the process; ``synchronous=FULL`` also makes
it survive a power cut, at the price of an fsync per commit.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .types import Candidate, Trial, TrialStatus

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number      INTEGER PRIMARY KEY,
    step        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    config      TEXT NOT NULL,
    origin      TEXT NOT NULL DEFAULT '',
    cand_meta   TEXT NOT NULL DEFAULT '{}',
    metrics     TEXT NOT NULL DEFAULT '{}',
    cost        TEXT NOT NULL DEFAULT '{}',
    error       TEXT,
    info        TEXT NOT NULL DEFAULT '{}',
    duration_s  REAL NOT NULL DEFAULT 0,
    proposed_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS deployments (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    trial     INTEGER NOT NULL,
    ok        INTEGER NOT NULL,
    artifacts TEXT NOT NULL,
    metrics   TEXT NOT NULL,
    message   TEXT NOT NULL,
    at        REAL NOT NULL
);
"""


class StoreError(RuntimeError):
    pass


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, allow_nan=True, separators=(",", ":"))


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


class TrialStore:
    """Trials of one run in ``<run_dir>/trials.sqlite``."""

    FILENAME = "trials.sqlite"

    def __init__(self, path: Path | str, synchronous: str = "NORMAL"):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / self.FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._sync = synchronous.upper()
        self._con.execute(f"PRAGMA synchronous={self._sync}")
        self._con.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", SCHEMA_VERSION)

    # -- meta --------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self._con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, _dumps(value)))

    # -- writing -----------------------------------------------------------
    def next_number(self) -> int:
        row = self._con.execute("SELECT COALESCE(MAX(number) + 1, 0) FROM trials").fetchone()
        return int(row[0])

    def add_pending(self, candidates: Sequence[Candidate], step: int) -> List[Candidate]:
        """Record proposals (one transaction) and return them numbered."""
        start = self.next_number()
        now = time.time()
        numbered = [c.with_number(start + i) for i, c in enumerate(candidates)]
        rows = [
            (c.number, step, TrialStatus.PENDING, _dumps(c.config), c.origin, _dumps(c.meta), now)
            for c in numbered
        ]
        # A proposal needs no fsync of its own: in WAL mode the next FULL commit
        # (the trial's result) syncs every frame before it, this one included.
        relax = self._sync in ("FULL", "EXTRA")
        if relax:
            self._con.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._tx():
                self._con.executemany(
                    "INSERT INTO trials(number, step, status, config, origin, cand_meta, proposed_at) VALUES (?,?,?,?,?,?,?)",
                    rows,
                )
        finally:
            if relax:
                self._con.execute(f"PRAGMA synchronous={self._sync}")
        return numbered

    def finish(self, trial: Trial, extra_meta: Optional[Dict[str, Any]] = None) -> None:
        """Commit a finished trial (and optional run metadata) atomically."""
        if trial.status == TrialStatus.PENDING:
            raise StoreError(f"trial {trial.number}: cannot finish with status 'pending'")
        with self._tx():
            cur = self._con.execute(
                "UPDATE trials SET status=?, metrics=?, cost=?, error=?, info=?, duration_s=?, finished_at=? "
                "WHERE number=? AND status=?",
                (
                    trial.status,
                    _dumps(dict(trial.metrics)),
                    _dumps(dict(trial.cost)),
                    trial.error,
                    _dumps(dict(trial.info)),
                    float(trial.duration_s),
                    time.time(),
                    trial.number,
                    TrialStatus.PENDING,
                ),
            )
            if cur.rowcount != 1:
                raise StoreError(f"trial {trial.number} is not pending (already finished?)")
            for k, v in (extra_meta or {}).items():
                self._con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, _dumps(v)))

    def add_deployment(self, number: int, ok: bool, artifacts: Dict[str, str], metrics: Dict[str, float], message: str) -> None:
        with self._tx():
            self._con.execute(
                "INSERT INTO deployments(trial, ok, artifacts, metrics, message, at) VALUES (?,?,?,?,?,?)",
                (number, int(ok), _dumps(artifacts), _dumps(metrics), message, time.time()),
            )

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store._con.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                store._con.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # -- reading -----------------------------------------------------------
    _COLS = "number, status, config, origin, cand_meta, metrics, cost, error, info, duration_s"

    @staticmethod
    def _row_to_trial(row: Sequence[Any]) -> Trial:
        number, status, config, origin, cand_meta, metrics, cost, error, info, duration = row
        cand = Candidate(json.loads(config), int(number), origin, json.loads(cand_meta))
        return Trial(
            number=int(number),
            candidate=cand,
            status=status,
            metrics=json.loads(metrics),
            cost=json.loads(cost),
            error=error,
            duration_s=float(duration),
            info=json.loads(info),
        )

    def trials(self, statuses: Optional[Iterable[str]] = None) -> List[Trial]:
        q = f"SELECT {self._COLS} FROM trials"
        args: tuple = ()
        if statuses is not None:
            statuses = list(statuses)
            q += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = tuple(statuses)
        q += " ORDER BY number"
        return [self._row_to_trial(r) for r in self._con.execute(q, args)]

    def finished(self) -> List[Trial]:
        return self.trials(TrialStatus.FINISHED)

    def pending(self) -> List[Candidate]:
        return [t.candidate for t in self.trials([TrialStatus.PENDING])]

    def trial(self, number: int) -> Trial:
        row = self._con.execute(f"SELECT {self._COLS} FROM trials WHERE number=?", (number,)).fetchone()
        if row is None:
            raise StoreError(f"no trial {number} in {self.path} (it has {self.count()} trials)")
        return self._row_to_trial(row)

    def count_origin(self, origin: str) -> int:
        """How many trials (any status) a given ``origin`` produced (``enqueued`` ...)."""
        return int(self._con.execute("SELECT COUNT(*) FROM trials WHERE origin=?", (origin,)).fetchone()[0])

    def count(self, status: Optional[str] = None) -> int:
        if status is None:
            return int(self._con.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        return int(self._con.execute("SELECT COUNT(*) FROM trials WHERE status=?", (status,)).fetchone()[0])

    def max_step(self) -> int:
        row = self._con.execute("SELECT COALESCE(MAX(step), -1) FROM trials").fetchone()
        return int(row[0])

    def deployments(self) -> List[Dict[str, Any]]:
        rows = self._con.execute("SELECT trial, ok, artifacts, metrics, message, at FROM deployments ORDER BY id")
        return [
            {"trial": t, "ok": bool(ok), "artifacts": json.loads(a), "metrics": json.loads(m), "message": msg, "at": at}
            for t, ok, a, m, msg, at in rows
        ]

    def close(self) -> None:
        try:
            self._con.close()
        except sqlite3.Error:  # pragma: no cover
            pass

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def finite_or_nan_keys(metrics: Dict[str, Any]) -> List[str]:
    """Names of metrics that are NaN or infinite (or not numbers at all)."""
    bad = []
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            bad.append(k)
            continue
        if math.isnan(f) or math.isinf(f):
            bad.append(k)
    return bad
