"""hwaml: hardware-aware AutoML, one platform for the design-automation techniques
of efficient computing. The core defines the hook contract; techniques are plugins.

Plugin authors need three names from here: :data:`hookimpl` to mark hook
implementations, the dataclasses of :mod:`hwaml.types` and the dimensions of
:mod:`hwaml.space`.
"""

import pluggy

from .space import Categorical, Float, Group, Integer, Repeated, SearchSpace, SpaceError
from .types import BuiltModel, Candidate, CostReport, DeployResult, EvalResult, RunContext, RunSummary, Trial, TrialStatus
from .pruning import TrialPruned

__version__ = "0.1.0"

#: Marker for hook implementations: ``@hookimpl def evaluate(self, candidate, ctx): ...``
hookimpl = pluggy.HookimplMarker("hwaml")

__all__ = [
    "hookimpl",
    "BuiltModel",
    "Candidate",
    "CostReport",
    "DeployResult",
    "EvalResult",
    "RunContext",
    "RunSummary",
    "Trial",
    "TrialStatus",
    "TrialPruned",
    "SearchSpace",
    "Categorical",
    "Integer",
    "Float",
    "Group",
    "Repeated",
    "SpaceError",
    "__version__",
]
