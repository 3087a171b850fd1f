"""Linear quantization as APQ (and HAQ before it) uses it.

* Weights: symmetric linear, ``2^(b-1) - 1`` levels each side of zero, one
  scale per layer from the clipping range (the largest magnitude, or the
  KL-optimal threshold below 5 bits).
* Activations: unsigned linear, ``2^b - 1`` levels over ``[0, alpha]`` with a
  trainable clipping value ``alpha`` initialised at 6 (the gradient reaches
  ``alpha`` where the input is clipped, as in PACT). Inputs that can be
  negative (a linear bottleneck, the image, MobileNetV3's h-swish) use the
  same quantizer symmetric over ``[-alpha, alpha]`` (the reference's
  unsigned quantizer would zero their negative half); see
  :mod:`hwaml_apq.network` for which layer gets which.
* Rounding passes gradients straight through (STE).
* Range calibration: before fine-tuning, every clipping range is set on a
  batch of training images: by minimising the KL divergence between the
  histogram of the values and its quantized version (TensorRT's method)
  below 5 bits, by the largest value otherwise.

:func:`quantize_network` swaps every convolution and linear layer of a
static network for a :class:`QuantConv2d` / :class:`QuantLinear` holding its
weights; :func:`calibrate` and :func:`finetune` are the two steps after it.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "round_ste",
    "quantize_weight",
    "ActivationQuantizer",
    "QuantConv2d",
    "QuantLinear",
    "quant_layers",
    "kl_threshold",
    "calibrate",
    "finetune",
    "KL_BITS_BELOW",
]

#: bit-widths below this are calibrated by KL divergence (APQ/HAQ), others by the maximum
KL_BITS_BELOW = 5


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: torch.Tensor, bits: int, clip: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric linear fake-quantization of ``w`` to ``bits`` (clip: the range; default max |w|)."""
    alpha = w.detach().abs().max() if clip is None else clip
    alpha = torch.clamp(alpha, min=1e-8)
    levels = 2 ** (int(bits) - 1) - 1
    scale = alpha / levels
    return round_ste(torch.clamp(w, -alpha, alpha) / scale) * scale


class ActivationQuantizer(nn.Module):
    """Fake-quantize activations to ``bits`` over ``[0, alpha]`` (unsigned) or
    ``[-alpha, alpha]`` (``signed``), ``alpha`` trainable, initialised at 6."""

    def __init__(self, bits: int, signed: bool = False, init_clip: float = 6.0):
        super().__init__()
        self.bits = int(bits)
        self.signed = bool(signed)
        self.alpha = nn.Parameter(torch.tensor(float(init_clip)))
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        alpha = torch.clamp(self.alpha, min=1e-4)
        if self.signed:
            levels = 2 ** (self.bits - 1) - 1
            x = torch.maximum(torch.minimum(x, alpha), -alpha)
        else:
            levels = 2**self.bits - 1
            x = torch.minimum(F.relu(x), alpha)
        scale = alpha / levels
        return round_ste(x / scale) * scale

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


class QuantConv2d(nn.Module):
    """A convolution with ``w_bits`` weights reading ``a_bits`` activations."""

    def __init__(self, conv: nn.Conv2d, w_bits: int, a_bits: int, signed_input: bool, init_clip: float = 6.0):
        super().__init__()
        self.conv = conv
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        self.act_quant = ActivationQuantizer(a_bits, signed_input, init_clip)
        self.register_buffer("weight_clip", conv.weight.detach().abs().max().clone())
        self.quantize_weights = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_quant(x)
        c = self.conv
        w = quantize_weight(c.weight, self.w_bits, self.weight_clip) if self.quantize_weights else c.weight
        return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)


class QuantLinear(nn.Module):
    """A linear layer with ``w_bits`` weights reading ``a_bits`` activations."""

    def __init__(self, linear: nn.Linear, w_bits: int, a_bits: int, signed_input: bool, init_clip: float = 6.0):
        super().__init__()
        self.linear = linear
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        self.act_quant = ActivationQuantizer(a_bits, signed_input, init_clip)
        self.register_buffer("weight_clip", linear.weight.detach().abs().max().clone())
        self.quantize_weights = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_quant(x)
        w = quantize_weight(self.linear.weight, self.w_bits, self.weight_clip) if self.quantize_weights else self.linear.weight
        return F.linear(x, w, self.linear.bias)


QUANT_TYPES = (QuantConv2d, QuantLinear)


def quant_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The quantized layers of a network, in registration order."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, QUANT_TYPES)]


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------


def kl_threshold(values: np.ndarray, bits: int, signed: bool, n_bins: int = 512) -> float:
    """The clipping threshold minimising KL(P || Q) between the histogram P of
    ``|values|`` (``values >= 0`` when unsigned) clipped at the threshold and
    its ``bits``-bit quantized version Q (TensorRT's entropy calibration)."""
    v = np.abs(values.astype(np.float64).ravel()) if signed else np.clip(values.astype(np.float64).ravel(), 0, None)
    top = float(v.max()) if v.size else 0.0
    if top <= 0:
        return 1e-4
    levels = 2 ** (int(bits) - 1) if signed else 2 ** int(bits)
    hist, edges = np.histogram(v, bins=n_bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    if levels >= n_bins:
        return top
    best_kl, best_i = math.inf, n_bins
    csum = np.concatenate([[0.0], np.cumsum(hist)])
    nz_all = (hist > 0).astype(np.float64)
    nzsum = np.concatenate([[0.0], np.cumsum(nz_all)])
    total = csum[-1]
    for i in range(levels, n_bins + 1):
        p = hist[:i].copy()
        p[-1] += total - csum[i]
        # merge the first i bins into `levels` groups (as np.array_split), spread each
        # group's mass back evenly over its non-empty bins
        sizes = np.full(levels, i // levels)
        sizes[: i % levels] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        g_mass = csum[bounds[1:]] - csum[bounds[:-1]]
        g_nz = nzsum[bounds[1:]] - nzsum[bounds[:-1]]
        per_bin = np.repeat(np.divide(g_mass, g_nz, out=np.zeros(levels), where=g_nz > 0), sizes)
        q = per_bin * nz_all[:i]
        ps, qs = p.sum(), q.sum()
        if ps <= 0 or qs <= 0:
            continue
        p_n, q_n = p / ps, q / qs
        mask = p_n > 0
        kl = float(np.sum(p_n[mask] * np.log(p_n[mask] / np.where(q_n[mask] > 0, q_n[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


@torch.no_grad()
def calibrate(net: nn.Module, images: torch.Tensor, n_bins: int = 512, batch_size: int = 128) -> Dict[str, float]:
    """Set every quantized layer's activation clip (from the inputs it sees on
    ``images``, quantization off) and weight clip: KL divergence below
    :data:`KL_BITS_BELOW` bits, the maximum otherwise. Returns the activation clips."""
    layers = quant_layers(net)
    seen: Dict[str, List[torch.Tensor]] = {n: [] for n, _ in layers}
    handles = []
    for name, layer in layers:
        layer.act_quant.enabled = False

        def hook(mod, args, name=name):
            x = args[0].detach()
            # a random subsample keeps the histograms cheap on large feature maps
            flat = x.reshape(-1)
            if flat.numel() > 200_000:
                idx = torch.randint(flat.numel(), (200_000,), generator=torch.Generator().manual_seed(0))
                flat = flat[idx]
            seen[name].append(flat)

        handles.append(layer.act_quant.register_forward_pre_hook(hook))
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(images), batch_size):
            net(images[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
        for _, layer in layers:
            layer.act_quant.enabled = True
        net.train(was_training)
    clips = {}
    for name, layer in layers:
        q = layer.act_quant
        x = torch.cat(seen[name]).numpy()
        if q.bits < KL_BITS_BELOW:
            a = kl_threshold(x, q.bits, q.signed, n_bins)
        else:
            a = float(np.abs(x).max()) if q.signed else float(max(x.max(), 0.0))
        q.alpha.fill_(max(a, 1e-4))
        clips[name] = float(q.alpha)
        w = (layer.conv.weight if isinstance(layer, QuantConv2d) else layer.linear.weight).detach()
        if layer.w_bits < KL_BITS_BELOW:
            layer.weight_clip.fill_(max(kl_threshold(w.numpy(), layer.w_bits, True, n_bins), 1e-8))
        else:
            layer.weight_clip.fill_(float(w.abs().max()))
    return clips


# ---------------------------------------------------------------------------
# quantization-aware fine-tuning
# ---------------------------------------------------------------------------


def finetune(
    net: nn.Module,
    loader: Iterable,
    epochs: int,
    lr: float,
    on_epoch: Optional[Callable[[int], None]] = None,
    weight_decay: float = 0.0,
    max_steps_per_epoch: Optional[int] = None,
) -> List[float]:
    """Quantization-aware fine-tuning: SGD with momentum 0.9 and a cosine
    schedule, cross-entropy; the clipping values train with the weights.
    ``on_epoch(epoch)`` runs after every epoch (validation, pruning).
    Returns the mean training loss per epoch."""
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = len(loader) if max_steps_per_epoch is None else min(len(loader), max_steps_per_epoch)  # type: ignore[arg-type]
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    losses = []
    for epoch in range(epochs):
        net.train()
        run, n = 0.0, 0
        for step, (x, y) in enumerate(loader):
            if max_steps_per_epoch is not None and step >= max_steps_per_epoch:
                break
            loss = F.cross_entropy(net(x), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"quantization-aware fine-tuning: loss became {float(loss)} at epoch {epoch} step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach())
            n += 1
        losses.append(run / max(1, n))
        net.eval()
        if on_epoch is not None:
            on_epoch(epoch)
    net.eval()
    return losses
