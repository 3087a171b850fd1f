"""The memory-saving training mode: TinyTL's savings realised in PyTorch.

Plain PyTorch autograd keeps more than the model needs (the reason the
reference code's users measured under 10% saving): a convolution saves its
input even when its weight is frozen, ReLU6 keeps its fp32 input, group norm
keeps its input when only the shift trains, weight standardisation keeps
weight-sized intermediates, pooling keeps its input for its shape. This module
swaps those layers for custom ``torch.autograd.Function``s that save only what
the gradient needs:

- convolution / linear: the input only if the weight trains (the weight itself is
  a parameter); frozen weights live as uint8 k-means codes and a 256-entry codebook
  and are decoded on the fly in forward and backward; weight standardisation is
  recomputed in backward instead of being stored;
- ReLU / ReLU6 / dropout: a 1-bit packed mask;
- group norm: nothing when neither its input nor its scale needs a gradient (a
  frozen norm whose shift trains: the shift's gradient is a sum), else its input
  and the per-group statistics (the input gradient of a per-sample normalisation
  needs the normalised input; there is no exact way around it);
- average pooling: nothing (only the shape);
- optionally (``recompute=True``) each mobile block keeps only its input and is
  run again during backward (activation recomputation): what a training engine
  does to get near the paper's bytes when its norms are GroupNorms (whose input
  the exact backward needs). Costs one more forward of each block.

Gradients equal plain autograd's (the same ATen backward kernels are called);
``tests/test_tinytl_memsave.py`` checks it for every method.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import WSConv2d, standardise_weight
from .quantize import Codebook

__all__ = ["to_memory_saving", "apply_recompute", "recompute_paths", "Recompute", "pack_mask", "unpack_mask", "MemConv2d", "MemLinear", "MemGroupNorm", "MemReLU", "MemDropout", "MemAvgPool"]

_BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as bits, 8 to a byte (``ceil(numel / 8)`` bytes)."""
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8).to(torch.uint8) * _BIT_WEIGHTS).sum(1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= int(s)
    bits = (packed.unsqueeze(1) & _BIT_WEIGHTS) != 0
    return bits.reshape(-1)[:n].reshape(shape)


# ---------------------------------------------------------------------------
# convolution and linear
# ---------------------------------------------------------------------------


class _FrozenOrTrainable(nn.Module):
    """Holds a weight either as a trainable fp32 parameter or, frozen, as codes + codebook."""

    weight: Optional[nn.Parameter]

    def _init_weight(self, layer: nn.Module, book: Optional[Codebook]) -> None:
        self.bias = layer.bias
        if layer.weight.requires_grad or book is None:
            self.weight = layer.weight
        else:
            self.weight = None
            self.register_buffer("weight_codes", book.codes.clone())
            self.register_buffer("weight_centroids", book.centroids.clone())

    def frozen_weight(self) -> torch.Tensor:
        if self.weight is not None:
            return self.weight.detach()
        return self.weight_centroids[self.weight_codes.long()]


class _ConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        trainable = weight is not None and weight.requires_grad
        raw = weight if trainable else layer.frozen_weight()
        w = standardise_weight(raw, layer.ws_eps) if layer.ws else raw
        y = F.conv2d(x, w, bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        ctx.layer, ctx.x_shape, ctx.trainable = layer, x.shape, trainable
        ctx.save_for_backward(x if trainable and ctx.needs_input_grad[1] else None, weight if trainable else None)
        return y

    @staticmethod
    def backward(ctx, gy):
        layer = ctx.layer
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gx = gw = gb = None
        with torch.enable_grad():
            raw = weight.detach().requires_grad_(need_w) if ctx.trainable else layer.frozen_weight()
            w = standardise_weight(raw, layer.ws_eps) if layer.ws else raw
        if need_x or need_w:
            gx_, gw_, _ = torch.ops.aten.convolution_backward(
                gy,
                x if x is not None else gy.new_empty(()).expand(ctx.x_shape),
                w.detach(),
                None,
                layer.stride,
                layer.padding,
                layer.dilation,
                False,
                [0, 0],
                layer.groups,
                [need_x, need_w, False],
            )
            gx = gx_ if need_x else None
            if need_w:
                gw = torch.autograd.grad(w, raw, gw_)[0] if layer.ws else gw_
        if need_b:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None


class MemConv2d(_FrozenOrTrainable):
    """A (weight-standardised) convolution that saves its input only when its weight trains."""

    def __init__(self, conv: nn.Conv2d, book: Optional[Codebook] = None):
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.in_channels, self.out_channels, self.kernel_size = conv.in_channels, conv.out_channels, conv.kernel_size
        self.ws = isinstance(conv, WSConv2d)
        self.ws_eps = getattr(conv, "ws_eps", 0.0)
        if isinstance(conv.padding, str):
            raise ValueError(f"memory-saving convolution: string padding {conv.padding!r} is not supported; use integer padding")
        self._init_weight(conv, book)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ConvFn.apply(x, self.weight, self.bias, self)


class _LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        trainable = weight is not None and weight.requires_grad
        w = weight if trainable else layer.frozen_weight()
        ctx.layer, ctx.trainable = layer, trainable
        ctx.save_for_backward(x if trainable and ctx.needs_input_grad[1] else None, weight if trainable else None)
        return F.linear(x, w, bias)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        w = weight if ctx.trainable else ctx.layer.frozen_weight()
        gx = gy.matmul(w) if ctx.needs_input_grad[0] else None
        gw = gy.reshape(-1, gy.shape[-1]).t().mm(x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
        gb = gy.reshape(-1, gy.shape[-1]).sum(0) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


class MemLinear(_FrozenOrTrainable):
    def __init__(self, linear: nn.Linear, book: Optional[Codebook] = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._init_weight(linear, book)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LinearFn.apply(x, self.weight, self.bias, self)


# ---------------------------------------------------------------------------
# group norm
# ---------------------------------------------------------------------------


class _GroupNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        n, c = x.shape[0], x.shape[1]
        hw = x[0, 0].numel()
        y, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, n, c, hw, groups, eps)
        ctx.dims = (n, c, hw, groups)
        ctx.keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        if ctx.keep:
            ctx.save_for_backward(x, mean, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, gy):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if ctx.keep:
            x, mean, rstd, weight = ctx.saved_tensors
            n, c, hw, groups = ctx.dims
            gx, gw, gb = torch.ops.aten.native_group_norm_backward(gy, x, mean, rstd, weight, n, c, hw, groups, [need_x, need_w, need_b])
            return (gx if need_x else None), (gw if need_w else None), (gb if need_b else None), None, None
        gb = gy.sum([0] + list(range(2, gy.dim()))) if need_b else None
        return None, None, gb, None, None


class MemGroupNorm(nn.Module):
    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        if not gn.affine:
            raise ValueError("memory-saving group norm needs an affine group norm")
        self.num_groups, self.num_channels, self.eps = gn.num_groups, gn.num_channels, gn.eps
        self.weight, self.bias = gn.weight, gn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GroupNormFn.apply(x, self.weight, self.bias, self.num_groups, self.eps)


# ---------------------------------------------------------------------------
# ReLU / ReLU6, dropout, pooling
# ---------------------------------------------------------------------------


class _ClampFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, upper):
        y = torch.relu(x) if upper is None else F.hardtanh(x, 0.0, upper)
        ctx.shape = x.shape
        if ctx.needs_input_grad[0]:
            mask = x > 0 if upper is None else (x > 0) & (x < upper)
            ctx.save_for_backward(pack_mask(mask))
        return y

    @staticmethod
    def backward(ctx, gy):
        (packed,) = ctx.saved_tensors
        return gy * unpack_mask(packed, ctx.shape), None


class MemReLU(nn.Module):
    """ReLU (``upper=None``) or ReLU6 (``upper=6``) keeping a 1-bit mask for backward."""

    def __init__(self, upper: Optional[float] = None):
        super().__init__()
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ClampFn.apply(x, self.upper)


class _DropoutFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        noise = torch.empty_like(x).bernoulli_(1 - p)
        keep = noise != 0
        noise.div_(1 - p)
        ctx.shape, ctx.p = x.shape, p
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(pack_mask(keep))
        return x * noise

    @staticmethod
    def backward(ctx, gy):
        (packed,) = ctx.saved_tensors
        scale = unpack_mask(packed, ctx.shape).to(gy.dtype).div_(1 - ctx.p)
        return gy * scale, None


class MemDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return _DropoutFn.apply(x, self.p)


class _PoolFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, pool):
        ctx.shape, ctx.pool, ctx.dtype = x.shape, pool, x.dtype
        return pool(x)

    @staticmethod
    def backward(ctx, gy):
        # the gradient of an average pool depends only on the input's shape
        with torch.enable_grad():
            z = torch.zeros(ctx.shape, dtype=ctx.dtype, requires_grad=True)
            (gx,) = torch.autograd.grad(ctx.pool(z), z, gy)
        return gx, None


class MemAvgPool(nn.Module):
    """Average pooling (fixed or adaptive) that saves nothing for backward."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PoolFn.apply(x, self.pool)


# ---------------------------------------------------------------------------
# block recomputation
# ---------------------------------------------------------------------------


class _RecomputeFn(torch.autograd.Function):
    """Run ``block`` without keeping anything but its input; run it again in backward.

    The trainable parameters are passed as inputs only so that the output requires a
    gradient when the input does not; their gradients are accumulated by the inner
    backward (as reentrant checkpointing does), so ``None`` is returned for them."""

    @staticmethod
    def forward(ctx, x, block, *params):
        ctx.block = block
        ctx.x_grad = x.requires_grad
        ctx.save_for_backward(x)
        with torch.no_grad():
            return block(x)

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xr = x.detach().requires_grad_(ctx.x_grad)
            y = ctx.block(xr)
            torch.autograd.backward(y, gy)
        return (xr.grad if ctx.x_grad else None), None, *([None] * (len(ctx.needs_input_grad) - 2))


class Recompute(nn.Module):
    """A mobile block trained with recomputation (see :class:`_RecomputeFn`)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = [p for p in self.block.parameters() if p.requires_grad]
        if not torch.is_grad_enabled() or not (x.requires_grad or params):
            return self.block(x)
        return _RecomputeFn.apply(x, self.block, *params)


def recompute_paths(net: nn.Module, input_shape) -> List[str]:
    """The modules a recomputing run wraps: each mobile block together with its shortcut
    (a lite residual module's owner block when the module wraps a main branch)."""
    from .lite_residual import LiteResidualModule, find_mobile_blocks

    paths = {b.path.rpartition(".")[0] if b.wraps == "main_branch" else b.path for b in find_mobile_blocks(net, input_shape)}
    for name, m in net.named_modules():
        if isinstance(m, LiteResidualModule):  # find_mobile_blocks skips adapted blocks
            parent = name.rpartition(".")[0]
            owner = net.get_submodule(parent) if parent else None
            paths.add(parent if owner is not None and isinstance(getattr(owner, "residual", None), bool) else name)
    return sorted(p for p in paths if not any(p != q and p.startswith(q + ".") for q in paths))


def _convert(module: nn.Module, books: Dict[str, Codebook], prefix: str) -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}" if prefix else name
        new: Optional[nn.Module] = None
        if isinstance(child, nn.Conv2d):
            new = MemConv2d(child, books.get(path))
        elif isinstance(child, nn.Linear):
            new = MemLinear(child, books.get(path))
        elif isinstance(child, nn.GroupNorm) and child.affine:
            new = MemGroupNorm(child)
        elif isinstance(child, nn.ReLU6):
            new = MemReLU(6.0)
        elif type(child) is nn.ReLU:
            new = MemReLU(None)
        elif isinstance(child, nn.Hardtanh) and child.min_val == 0.0:
            new = MemReLU(float(child.max_val))
        elif isinstance(child, nn.Dropout):
            new = MemDropout(child.p)
        elif isinstance(child, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            new = MemAvgPool(child)
        if new is not None:
            new.train(child.training)
            setattr(module, name, new)
        else:
            _convert(child, books, path)


def to_memory_saving(
    net: nn.Module, books: Optional[Dict[str, Codebook]] = None, inplace: bool = False, recompute: bool = False, input_shape=None
) -> nn.Module:
    """``net`` with its layers replaced by the memory-saving ones (a deep copy unless
    ``inplace``). ``books``: the k-means codebooks of frozen weights by module name
    (:func:`~hwaml_tinytl.quantize.quantize_frozen_weights`): those weights are then
    held as uint8 codes. Trainable parameters are shared with ``net`` when ``inplace``.
    ``recompute``: also wrap each mobile block in :class:`Recompute` (needs ``input_shape``)."""
    target = net if inplace else copy.deepcopy(net)
    paths = []
    if recompute:
        if input_shape is None:
            raise ValueError("recompute=True needs the input shape to find the mobile blocks")
        paths = recompute_paths(target, input_shape)
    _convert(target, dict(books or {}), "")
    return apply_recompute(target, paths)


def apply_recompute(model: nn.Module, paths: List[str]) -> nn.Module:
    """Wrap the modules at ``paths`` (:func:`recompute_paths`) in :class:`Recompute`, in place."""
    for path in paths:
        parent, _, name = path.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, name, Recompute(getattr(owner, name)))
    return model
