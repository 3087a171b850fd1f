"""Entry point of hwaml-mlflow: contributes its config group.

Component (instantiated by Hydra in the loop's process):
``+observer=mlflow`` (:class:`hwaml_mlflow.tracker.MlflowObserver`).
"""

from hwaml import hookimpl


@hookimpl
def config_search_path():
    return ["pkg://hwaml_mlflow.conf"]
