"""Entry point of hwaml-optuna-dashboard: contributes its config group.

Component (instantiated by Hydra in the loop's process):
``+observer=optuna_journal`` (:class:`hwaml_optuna_dashboard.journal.OptunaJournalObserver`);
the ``hwaml dashboard RUN_DIR`` command serves the journal (:mod:`hwaml_optuna_dashboard.dashboard`).
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_optuna_dashboard.conf"]
