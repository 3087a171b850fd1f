"""A roofline latency model: each layer takes as long as its slower resource.

For one layer with ``macs`` multiply-accumulates that moves ``bytes`` through
memory, on a device with a peak of ``peak_gmacs`` GMAC/s and ``bandwidth_gbs``
GB/s of memory bandwidth::

    latency = max(macs / peak_macs_per_s, bytes / bandwidth_bytes_per_s)

The first term is the compute roof, the second the memory roof. Summing that
over the layers of a network is a first-order but honest latency estimate: it
knows that a depthwise convolution is memory-bound on a phone core while a 1x1
convolution is compute-bound on a microcontroller.

Where the layers come from (first match wins):

1. an explicit workload: ``candidate.meta["layers"]`` or ``candidate.config["layers"]``
   as a list of ``{"macs": ..., "bytes": ...}`` mappings, or top-level
   ``macs``/``bytes`` numbers in the candidate's meta or config;
2. the evaluator's network: when the run's evaluator builds one (an NN evaluator
   answering hwaml's ``build_model`` hook), ``ctx.build_model(candidate).module`` is
   run once on a zero batch of its ``input_shape`` and every convolution and linear
   layer becomes a :class:`Layer` (:func:`module_layers`). The backend never
   rebuilds a network from the candidate by rules of its own, so it costs exactly
   what the evaluator trains;
3. for an evaluator that builds no network, the architecture of hwaml's analytic
   ``nas_toy`` space (``resolution``, ``width``, ``blocks`` of ``kernel``/``expand``),
   which describes a network without building one, expanded into the layers of a
   MobileNetV2-style network by :func:`nas_toy_layers`;
4. otherwise the backend abstains (returns ``None``) and constraints on its
   metrics are not checked for that candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from hwaml import BuiltModel, Candidate, CostReport, RunContext, hookimpl
from hwaml.plugins import PluginError

#: output channels of the stem and of successive blocks at width 1.0
BASE_CHANNELS = (16, 24, 32, 64, 96, 160, 320)


@dataclass(frozen=True)
class Layer:
    """One layer's work: multiply-accumulates and bytes moved (weights + activations)."""

    name: str
    macs: float
    bytes: float


def _channels(base: int, width: float) -> int:
    return max(8, int(round(base * width / 8.0)) * 8)


def nas_toy_layers(config: Mapping[str, Any], bytes_per_element: float = 1.0) -> List[Layer]:
    """The layers of a MobileNetV2-like network described by a ``nas_toy`` configuration.

    A 3x3 stride-2 stem, then one inverted-residual block per entry of
    ``config["blocks"]`` (1x1 expansion by ``expand``, ``kernel`` x ``kernel``
    depthwise with stride 2 for the first three blocks, 1x1 projection). Bytes
    count weights once and every activation read and written once.
    """
    e = float(bytes_per_element)
    res = int(config["resolution"])
    width = float(config["width"])
    layers: List[Layer] = []

    h = (res + 1) // 2
    c_in = _channels(BASE_CHANNELS[0], width)
    layers.append(Layer("stem", h * h * 3 * 9 * c_in, e * (res * res * 3 + 27 * c_in + h * h * c_in)))
    for i, block in enumerate(config["blocks"]):
        k, expand = int(block["kernel"]), int(block["expand"])
        c_mid = c_in * expand
        c_out = _channels(BASE_CHANNELS[min(i + 1, len(BASE_CHANNELS) - 1)], width)
        stride = 2 if i < 3 else 1
        h_out = (h + stride - 1) // stride
        layers.append(Layer(f"block{i}.expand", h * h * c_in * c_mid, e * (h * h * c_in + c_in * c_mid + h * h * c_mid)))
        layers.append(Layer(f"block{i}.depthwise", h_out * h_out * c_mid * k * k, e * (h * h * c_mid + c_mid * k * k + h_out * h_out * c_mid)))
        layers.append(Layer(f"block{i}.project", h_out * h_out * c_mid * c_out, e * (h_out * h_out * c_mid + c_mid * c_out + h_out * h_out * c_out)))
        h, c_in = h_out, c_out
    return layers


def _explicit_layers(source: Mapping[str, Any]) -> Optional[List[Layer]]:
    if "layers" in source and isinstance(source["layers"], Sequence):
        return [Layer(str(layer.get("name", i)), float(layer["macs"]), float(layer["bytes"])) for i, layer in enumerate(source["layers"])]
    if "macs" in source and "bytes" in source:
        return [Layer("total", float(source["macs"]), float(source["bytes"]))]
    return None


def module_layers(model: BuiltModel, bytes_per_element: float = 1.0) -> List[Layer]:
    """The convolution and linear layers of an evaluator's network, measured by running it.

    One forward pass on a zero batch of ``model.input_shape`` records each layer's
    input and output sizes. MACs: ``output elements * (input channels / groups) *
    kernel area`` for a convolution, ``output elements * input features`` for a
    linear layer. Bytes: input, weights and output, each once. Element-wise layers
    (activations, batch norm, pooling) are taken as fused into their neighbours.
    """
    import torch

    e = float(bytes_per_element)
    module = model.module
    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)
    layers: List[Layer] = []
    handles = []

    def record(name: str):
        def hook(mod: Any, inputs: Any, output: Any) -> None:
            x = inputs[0]
            if isinstance(mod, torch.nn.Linear):
                macs = output.numel() * mod.in_features
            else:
                kernel = 1
                for k in mod.kernel_size:
                    kernel *= int(k)
                macs = output.numel() * (mod.in_channels // mod.groups) * kernel
            weights = sum(p.numel() for p in mod.parameters(recurse=False))
            layers.append(Layer(name, float(macs), e * float(x.numel() + weights + output.numel())))

        return hook

    for name, mod in module.named_modules():
        if isinstance(mod, kinds):
            handles.append(mod.register_forward_hook(record(name or type(mod).__name__)))
    try:
        param = next(module.parameters(), None)
        x = torch.zeros((1, *model.input_shape), dtype=param.dtype if param is not None else torch.float32)
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return layers


def evaluator_network(candidate: Candidate, ctx: Optional[RunContext]) -> Optional[BuiltModel]:
    """The run's evaluator's network for ``candidate``, or ``None`` when it builds none."""
    if ctx is None or ctx.build_model is None:
        return None
    try:
        return ctx.build_model(candidate)
    except PluginError as exc:
        # hwaml asks the evaluator's build_model hook; an evaluator without one
        # (analytic, circuit, accelerator design) is not an error for this backend,
        # which then costs explicit or nas_toy workloads only. Any other failure is.
        if "does not implement build_model" in str(exc):
            return None
        raise


def find_workload(candidate: Candidate, bytes_per_element: float = 1.0, ctx: Optional[RunContext] = None) -> Optional[Tuple[List[Layer], str]]:
    """``(layers, where from)`` -- ``"explicit"``, ``"network"`` or ``"nas_toy"`` -- or ``None``."""
    for source in (candidate.meta, candidate.config):
        layers = _explicit_layers(source or {})
        if layers is not None:
            return layers, "explicit"
    model = evaluator_network(candidate, ctx)
    if model is not None:
        return module_layers(model, bytes_per_element), "network"
    cfg = candidate.config
    if all(k in cfg for k in ("resolution", "width", "blocks")):
        return nas_toy_layers(cfg, bytes_per_element), "nas_toy"
    return None


def workload(candidate: Candidate, bytes_per_element: float = 1.0, ctx: Optional[RunContext] = None) -> Optional[List[Layer]]:
    """The layers of a candidate, or ``None`` when it describes no known workload."""
    found = find_workload(candidate, bytes_per_element, ctx)
    return None if found is None else found[0]


def layer_seconds(layer: Layer, peak_macs_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """Roofline time of one layer: the slower of its compute and its memory traffic."""
    return max(layer.macs / peak_macs_per_s, layer.bytes / bandwidth_bytes_per_s)


class RooflineCost:
    """A cost backend that estimates latency with the roofline model.

    :param device: a label stored with each report (``cortex_m7``, ``a76`` ...).
    :param peak_gmacs: peak compute in GMAC/s (10^9 multiply-accumulates per second).
    :param bandwidth_gbs: sustained memory bandwidth in GB/s.
    :param bytes_per_element: 1 for int8 inference, 4 for fp32.
    :param overhead_ms: a fixed per-inference cost (interpreter, kernel launches).
    :param metric_prefix: prefix of the reported metrics; two roofline backends in
        one run need different prefixes, since a metric key may have one owner.
    """

    def __init__(
        self,
        device: str,
        peak_gmacs: float,
        bandwidth_gbs: float,
        bytes_per_element: float = 1.0,
        overhead_ms: float = 0.0,
        metric_prefix: str = "roofline",
    ):
        if peak_gmacs <= 0 or bandwidth_gbs <= 0:
            raise ValueError(f"roofline {device!r}: peak_gmacs and bandwidth_gbs must be > 0")
        self.device = device
        self.peak_macs_per_s = peak_gmacs * 1e9
        self.bandwidth_bytes_per_s = bandwidth_gbs * 1e9
        self.bytes_per_element = bytes_per_element
        self.overhead_ms = overhead_ms
        self.metric_prefix = metric_prefix
        #: arithmetic intensity (MAC/byte) above which a layer is compute-bound
        self.ridge_point = self.peak_macs_per_s / self.bandwidth_bytes_per_s

    @hookimpl
    def metric_names(self, ctx: RunContext) -> List[str]:
        p = self.metric_prefix
        return [f"{p}_latency_ms", f"{p}_macs_m", f"{p}_mbytes"]

    def estimate(self, layers: Sequence[Layer]) -> dict:
        seconds = [layer_seconds(layer, self.peak_macs_per_s, self.bandwidth_bytes_per_s) for layer in layers]
        compute_bound = [layer.name for layer in layers if layer.macs / max(layer.bytes, 1e-12) >= self.ridge_point]
        return {
            "latency_ms": self.overhead_ms + 1e3 * sum(seconds),
            "macs_m": sum(layer.macs for layer in layers) / 1e6,
            "mbytes": sum(layer.bytes for layer in layers) / 1e6,
            "compute_bound": compute_bound,
        }

    @hookimpl
    def cost(self, candidate: Candidate, ctx: RunContext) -> Optional[CostReport]:
        found = find_workload(candidate, self.bytes_per_element, ctx)
        if found is None:
            return None  # not a workload this model understands: abstain
        layers, origin = found
        est = self.estimate(layers)
        p = self.metric_prefix
        return CostReport(
            {f"{p}_latency_ms": est["latency_ms"], f"{p}_macs_m": est["macs_m"], f"{p}_mbytes": est["mbytes"]},
            source=f"roofline:{self.device}",
            info={"device": self.device, "workload": origin, "compute_bound_layers": est["compute_bound"], "layers": len(layers)},
        )
