"""hwaml-tinyengine: TinyEngine (MCUNet) for hwaml.

An int8 compiler for microcontrollers: torch.fx import, post-training int8
quantisation, whole-network memory planning with in-place depthwise layers and
patch-based inference, and C99 code generation checked bit for bit against a
Python int8 reference. See :mod:`hwaml_tinyengine.engine` for the API.

Names are imported lazily (on first use), so that loading the plugin entry
point stays cheap for every ``hwaml`` command.
"""

from hwaml.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "DeviceProfile": ".device",
        "PROFILES": ".device",
        "estimate_energy_mj": ".device",
        "estimate_latency_ms": ".device",
        "load_profile": ".device",
        "COST_METRICS": ".engine",
        "CompiledModel": ".engine",
        "compile_model": ".engine",
        "cost_of": ".engine",
        "plan_model": ".engine",
        "UnsupportedOpError": ".ir",
        "import_model": ".ir",
        "MemoryPlan": ".memory_planner",
        "plan_layer_by_layer": ".memory_planner",
        "plan_memory": ".memory_planner",
        "TinyEngineBackend": ".backend",
        "TinyEngineDigits": ".evaluator",
        "count_macs": ".models",
    },
)
