"""hwaml-roofline: roofline-model latency for hwaml candidates (a worked third-party plugin)."""

from .roofline import Layer, RooflineCost, find_workload, module_layers, nas_toy_layers, workload

__version__ = "0.1.0"

__all__ = ["Layer", "RooflineCost", "find_workload", "module_layers", "nas_toy_layers", "workload", "__version__"]
