"""hwaml-mlflow: log hwaml runs to MLflow (``+observer=mlflow``)."""

from .tracker import MlflowObserver

__all__ = ["MlflowObserver"]
