"""hwaml-myplugin: an hwaml plugin built from examples/plugin_template."""

from .backend import MyCost
from .evaluator import MyEvaluator

__version__ = "0.1.0"

__all__ = ["MyCost", "MyEvaluator", "__version__"]
