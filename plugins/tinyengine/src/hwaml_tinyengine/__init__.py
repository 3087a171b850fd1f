"""hwaml-tinyengine: TinyEngine (MCUNet) for hwaml.

An int8 compiler for microcontrollers: torch.fx import, post-training int8
quantisation, whole-network memory planning with in-place depthwise layers and
patch-based inference, and C99 code generation checked bit for bit against a
Python int8 reference. See :mod:`hwaml_tinyengine.engine` for the API.
"""

from .device import DeviceProfile, estimate_latency_ms, load_profile
from .engine import CompiledModel, compile_model, cost_of, plan_model
from .ir import UnsupportedOpError, import_model
from .memory_planner import MemoryPlan, plan_layer_by_layer, plan_memory

__version__ = "0.1.0"

__all__ = [
    "DeviceProfile",
    "load_profile",
    "estimate_latency_ms",
    "plan_model",
    "compile_model",
    "cost_of",
    "CompiledModel",
    "UnsupportedOpError",
    "import_model",
    "MemoryPlan",
    "plan_memory",
    "plan_layer_by_layer",
]
