"""Hand-designed and NAS-from-elsewhere baselines, scaled down to fit an MCU.

MCUNet compares TinyNAS with MobileNetV2 and ProxylessNAS-Mobile *scaled* by
width multiplier and input resolution until they fit the same memory. Both
are built here as TinyEngine-deployable networks (ReLU6, no squeeze-excite)
with :class:`hwaml_tinyengine.models.InvertedResidualNet`:

* :func:`mobilenetv2` - MobileNetV2's stage table (expand 6, 3x3 kernels, a
  1280-wide head kept at 1280 for width < 1, as in the paper);
* :func:`proxylessnas_style` - the shape of the published ProxylessNAS-Mobile
  network (mixed 3/5/7 kernels, expand 3/6, its stage depths), not a verbatim copy;

and :func:`scale_to_fit` picks the width x resolution of a family with the most
MACs among those that TinyEngine plans within a peak-SRAM and Flash budget.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

from torch import nn

__all__ = ["mobilenetv2", "proxylessnas_style", "BASELINES", "scale_to_fit", "count_model_macs"]


def _div8(x: float) -> int:
    return max(8, int(x + 4) // 8 * 8)


# (expand, channels, repeats, stride) after the 3x3 stem and the first separable block
_MBV2 = ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

# (channels, stride, [(kernel, expand), ...]) - ProxylessNAS-Mobile's shape
_PROXYLESS = (
    (32, 2, ((5, 3), (3, 3))),
    (40, 2, ((7, 3), (3, 3), (5, 3), (5, 3))),
    (80, 2, ((7, 6), (5, 3), (5, 3), (5, 3))),
    (96, 1, ((5, 6), (5, 3), (5, 3), (5, 3))),
    (192, 2, ((7, 6), (7, 6), (7, 3), (7, 3))),
    (320, 1, ((7, 6),)),
)


def mobilenetv2(width: float, resolution: int, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """MobileNetV2 at a width multiplier and input resolution."""
    from hwaml_tinyengine.models import InvertedResidualNet

    stages = [{"channels": _div8(c * width), "stride": s, "blocks": [{"kernel": 3, "expand": t}] * n} for t, c, n, s in _MBV2]
    return InvertedResidualNet(stages, int(resolution), in_channels, num_classes, stem_channels=_div8(32 * width), first_channels=_div8(16 * width), head_channels=_div8(1280 * max(1.0, width)))


def proxylessnas_style(width: float, resolution: int, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A ProxylessNAS-Mobile-shaped network at a width multiplier and resolution."""
    from hwaml_tinyengine.models import InvertedResidualNet

    stages = [{"channels": _div8(c * width), "stride": s, "blocks": [{"kernel": k, "expand": e} for k, e in blocks]} for c, s, blocks in _PROXYLESS]
    return InvertedResidualNet(stages, int(resolution), in_channels, num_classes, stem_channels=_div8(32 * width), first_channels=_div8(16 * width), head_channels=_div8(1280 * max(1.0, width)))


BASELINES: Dict[str, Callable[..., nn.Module]] = {"mobilenetv2": mobilenetv2, "proxylessnas": proxylessnas_style}


def count_model_macs(model: nn.Module) -> int:
    """MACs of convolutions and linear layers, from TinyEngine's IR."""
    from hwaml_tinyengine.ir import import_model
    from hwaml_tinyengine.ir import macs_of

    g = import_model(model, model.input_shape)
    return int(sum(macs_of(g, n) for n in g.nodes))


def scale_to_fit(
    family: str,
    sram_kb: float,
    flash_kb: float,
    widths: Sequence[float] = (0.2, 0.25, 0.35, 0.5, 0.75, 1.0),
    resolutions: Sequence[int] = (12, 16, 20, 24, 28, 32),
    patch: bool = True,
    max_overhead: float = 0.3,
) -> Optional[Dict[str, Any]]:
    """The (width, resolution) of ``family`` with the most MACs that fits
    ``sram_kb`` / ``flash_kb`` as TinyEngine plans it (``None`` if none fits).
    Returns ``{"width", "resolution", "macs", "peak_sram_kb", "flash_kb"}``."""
    from .space_optimization import memory_fit

    if family not in BASELINES:
        raise ValueError(f"unknown baseline family {family!r}; choose one of {sorted(BASELINES)}")
    best: Optional[Dict[str, Any]] = None
    for w in widths:
        for r in resolutions:
            model = BASELINES[family](w, r).eval()
            fits, peak, flash = memory_fit(model, model.input_shape, sram_kb, flash_kb, patch, max_overhead)
            if not fits:
                continue
            macs = count_model_macs(model)
            if best is None or macs > best["macs"]:
                best = {"width": float(w), "resolution": int(r), "macs": macs, "peak_sram_kb": peak, "flash_kb": flash}
    return best
