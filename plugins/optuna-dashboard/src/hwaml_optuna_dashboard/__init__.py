"""hwaml-optuna-dashboard: mirror a run into an Optuna journal (``+observer=optuna_journal``)
and watch it with optuna-dashboard (``hwaml dashboard RUN_DIR``)."""

from .journal import OptunaJournalObserver

__all__ = ["OptunaJournalObserver"]
