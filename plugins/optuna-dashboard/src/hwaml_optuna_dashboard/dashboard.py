"""``hwaml dashboard RUN_DIR``: optuna-dashboard on the run's journal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from .journal import JOURNAL_NAME, open_storage


class DashboardError(RuntimeError):
    pass


def find_journal(run_dir: Path | str, journal: Optional[str] = None) -> Path:
    """The journal of ``run_dir``: ``RUN_DIR/optuna.journal`` (or ``journal``);
    a multirun directory with exactly one job's journal also works."""
    run_dir = Path(run_dir)
    if journal is not None:
        p = Path(journal)
        p = p if p.is_absolute() else run_dir / p
        if not p.is_file():
            raise DashboardError(f"{p} does not exist")
        return p
    if not run_dir.is_dir():
        raise DashboardError(f"{run_dir} is not a directory (give a run directory: runs/<name>/<date>)")
    p = run_dir / JOURNAL_NAME
    if p.is_file():
        return p
    found: List[Path] = sorted(run_dir.glob(f"*/{JOURNAL_NAME}"))
    if len(found) == 1:
        return found[0]
    if found:
        raise DashboardError(f"{run_dir} holds {len(found)} journals ({', '.join(str(f.parent.name) for f in found)}): give one job's directory")
    raise DashboardError(f"no {JOURNAL_NAME} in {run_dir}: run the search with +observer=optuna_journal (the journal appears with the first finished trial)")


def serve(run_dir: Path | str, host: str = "127.0.0.1", port: int = 8080, journal: Optional[str] = None) -> int:
    """Serve optuna-dashboard on the run's journal until interrupted (Ctrl-C)."""
    import optuna_dashboard

    path = find_journal(run_dir, journal)
    print(f"hwaml dashboard: {path} on http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        optuna_dashboard.run_server(open_storage(path), host=host, port=int(port))
    except KeyboardInterrupt:
        pass
    return 0
