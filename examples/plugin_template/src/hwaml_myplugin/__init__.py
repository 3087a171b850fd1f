"""hwaml-myplugin: an hwaml plugin built from examples/plugin_template."""

from .backend import MyCost
from .evaluator import MyEvaluator
from .searcher import MySearcher

__version__ = "0.1.0"

__all__ = ["MyCost", "MyEvaluator", "MySearcher", "__version__"]
