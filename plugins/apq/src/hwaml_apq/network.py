"""Joint configurations as networks: static sub-networks of the OFA supernet,
pruned to their middle widths and quantized to their bit-widths.

:func:`extract_subnet` copies a configuration out of a trained
:class:`hwaml_ofa_nas.OFAMobileNetV3` (each block's kernel through OFA's
kernel transform, its middle width as the first ``width`` channels, which
progressive shrinking sorted by importance); :func:`build_untrained` makes
the same shapes with fresh weights (what costing needs: no supernet).
:func:`quantize_subnet` then swaps each convolution for a fake-quantized one:
inside each searched block the two point-wise convolutions take
``pw_w_bits`` / ``pw_a_bits`` and the depth-wise one ``dw_w_bits`` /
``dw_a_bits``; the fixed layers (stem, first block, head) are 8-bit, as in
HAQ/APQ, which keep the first and last layers at 8 bits; squeeze-excite stays
in full precision.

Activations are quantized unsigned where the layer before is a ReLU (APQ's
ProxylessNAS space is ReLU6 throughout, hence its unsigned quantizer); after
MobileNetV3's h-swish, whose output reaches -0.375, and after linear layers
the range is signed (clipping h-swish's negative part at every layer costs
most of the accuracy at 8 bits, measured).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from hwaml_ofa_nas.elastic import MBConvBlock, make_divisible
from hwaml_ofa_nas.supernet import LayerSpec, OFAMobileNetV3, conv_out

from .quantize import QuantConv2d, QuantLinear
from .space import BIT_KEYS, JointBlock, joint_blocks

__all__ = ["JointSubnet", "extract_subnet", "build_untrained", "quantize_subnet", "reconstruct_projections", "FIXED_BITS", "bit_report"]

#: bit-width of the layers outside the searched blocks
FIXED_BITS = 8


class JointSubnet(nn.Module):
    """stem -> fixed first block -> searched blocks -> head, as static modules;
    ``config`` is the joint configuration and ``resolution`` its input size."""

    def __init__(self, stem: nn.Module, first_block: nn.Module, blocks: List[nn.Module], head: nn.Module, config: Mapping[str, Any], resolution: int):
        super().__init__()
        self.stem = stem
        self.first_block = first_block
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.config = copy.deepcopy(dict(config))
        self.resolution = int(resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _ofa_config(arch: Any, config: Mapping[str, Any], resolution: int) -> Dict[str, Any]:
    """The OFA configuration selecting the same kernels and depths (widest expand)."""
    from .space import stage_blocks

    e = max(arch.expand_choices)
    out: Dict[str, Any] = {"resolution": int(resolution)}
    for name in arch.stage_names:
        out[name] = [{"kernel": int(b["kernel"]), "expand": e} for b in stage_blocks(config, name)]
    return out


def _se_mid(arch: Any, mid: int) -> int:
    return make_divisible(mid // arch.se_reduction, arch.divisor)


def _static_block(elastic: Any, spec: JointBlock) -> MBConvBlock:
    """OFA's ``ElasticMBConv.to_static`` with the middle width set to ``spec.mid``."""
    mid = spec.mid
    elastic.active_kernel = spec.kernel
    elastic.depth_conv.conv.active_kernel = spec.kernel
    se_mid = elastic.depth_conv.se.mid_channels(mid) if elastic.use_se else None
    block = MBConvBlock(elastic.in_channels, elastic.out_channels, spec.kernel, elastic.stride, mid, elastic.act, se_mid)
    block.inverted_bottleneck.conv = elastic.inverted_bottleneck.conv.to_static(elastic.in_channels, mid)
    block.inverted_bottleneck.bn = elastic.inverted_bottleneck.bn.to_static(mid)
    block.depth_conv.conv = elastic.depth_conv.conv.to_static(mid)
    block.depth_conv.bn = elastic.depth_conv.bn.to_static(mid)
    if elastic.use_se:
        block.depth_conv.se = elastic.depth_conv.se.to_static(mid)
    block.point_linear.conv = elastic.point_linear.conv.to_static(mid, elastic.out_channels)
    block.point_linear.bn = elastic.point_linear.bn.to_static(elastic.out_channels)
    return block


@torch.no_grad()
def extract_subnet(net: OFAMobileNetV3, config: Mapping[str, Any], resolution: int) -> JointSubnet:
    """The joint configuration copied out of a trained supernet (BN statistics
    as the supernet holds them: recalibrate before use)."""
    arch = net.arch
    net.set_active_subnet(_ofa_config(arch, config, resolution))
    specs = joint_blocks(arch, config, resolution)
    blocks = [_static_block(b, s) for b, s in zip(net.active_blocks(), specs)]
    sub = net.get_active_subnet()  # stem, first block and head as OFA extracts them
    out = JointSubnet(sub.stem, sub.first_block, blocks, sub.head, config, resolution)
    return out.eval()


@torch.no_grad()
def reconstruct_projections(sub: JointSubnet, ref: JointSubnet, images: torch.Tensor, max_rows: int = 20000, ridge: float = 1e-4, seed: int = 0) -> List[Dict[str, float]]:
    """AMC's channel reconstruction (He et al., ECCV 2018, after He, Zhang and Sun,
    ICCV 2017): a block whose middle width was pruned keeps its first channels
    (magnitude order: progressive shrinking sorted them), and the weights of its
    point-wise projection are refit by least squares so that the block's output
    before batch norm matches the unpruned network's on sample images.

    Blocks are taken in order; each pruned block sees the input of the already
    reconstructed network before it (the sequential scheme of the channel-pruning
    paper) and is fitted to ``ref``'s output of the same block; unpruned blocks
    are left as they are. ``max_rows`` sampled spatial positions, ``ridge``
    (relative to the mean diagonal of the Gram matrix) keeps the solve stable.
    Returns, per block, the relative error before and after the refit."""
    if len(sub.blocks) != len(ref.blocks):
        raise ValueError(f"reconstruction needs the same blocks: {len(sub.blocks)} vs {len(ref.blocks)} in the reference")
    g = torch.Generator().manual_seed(seed)
    sub.eval(), ref.eval()
    x_sub = sub.first_block(sub.stem(images))
    x_ref = ref.first_block(ref.stem(images))
    report: List[Dict[str, float]] = []
    for i, (bs, br) in enumerate(zip(sub.blocks, ref.blocks)):
        conv_s, conv_r = bs.point_linear.conv, br.point_linear.conv
        k, m = conv_s.in_channels, conv_r.in_channels
        if k < m:
            mid = bs.depth_conv(x_sub if bs.inverted_bottleneck is None else bs.inverted_bottleneck(x_sub))  # N, k, H, W
            target = conv_r(br.depth_conv(x_ref if br.inverted_bottleneck is None else br.inverted_bottleneck(x_ref)))  # N, out, H, W
            X = mid.permute(0, 2, 3, 1).reshape(-1, k).double()
            Y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
            if X.shape[0] > max_rows:
                rows = torch.randperm(X.shape[0], generator=g)[:max_rows]
                X, Y = X[rows], Y[rows]
            W0 = conv_s.weight.detach().reshape(conv_s.out_channels, k).double()
            before = float((X @ W0.T - Y).norm() / Y.norm().clamp_min(1e-12))
            gram = X.T @ X
            lam = ridge * float(gram.diagonal().mean().clamp_min(1e-12))
            W = torch.linalg.solve(gram + lam * torch.eye(k, dtype=gram.dtype), X.T @ Y).T  # out, k
            after = float((X @ W.T - Y).norm() / Y.norm().clamp_min(1e-12))
            if not torch.isfinite(W).all():
                raise FloatingPointError(f"AMC reconstruction of block {i}: the least-squares solution is not finite")
            conv_s.weight.copy_(W.to(conv_s.weight.dtype).reshape_as(conv_s.weight))
            report.append({"block": i, "kept": k, "of": m, "error_before": before, "error_after": after})
        x_sub, x_ref = bs(x_sub), br(x_ref)
    return report


def build_untrained(arch: Any, config: Mapping[str, Any], resolution: int, seed: int = 0) -> JointSubnet:
    """The same shapes with weights drawn from ``seed`` (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        stem_w = arch.scaled(arch.stem_width)
        stem = LayerSpec("stem", int(resolution), arch.in_channels, stem_w, kernel=3, stride=2).build()
        first_w = arch.scaled(arch.first_block_width)
        first = MBConvBlock(stem_w, first_w, 3, 1, stem_w, "relu", None)
        specs = joint_blocks(arch, config, resolution)
        blocks = [MBConvBlock(s.cin, s.cout, s.kernel, s.stride, s.mid, s.act, _se_mid(arch, s.mid) if s.se else None) for s in specs]
        size = specs[-1].size if specs else conv_out(int(resolution), 2)
        if specs:
            size = conv_out(size, specs[-1].stride)
        cin = specs[-1].cout if specs else first_w
        head = LayerSpec("head", size, cin, cin, mid=arch.scaled(arch.final_expand_width), feature=arch.scaled(arch.feature_width), n_classes=arch.n_classes).build()
    return JointSubnet(stem, first, blocks, head, config, resolution).eval()


def _wrap_conv(parent: nn.Module, attr: str, w_bits: int, a_bits: int, signed: bool) -> None:
    conv = getattr(parent, attr)
    setattr(parent, attr, QuantConv2d(conv, w_bits, a_bits, signed))


def quantize_subnet(sub: JointSubnet, arch: Any, inplace: bool = False) -> JointSubnet:
    """``sub`` with fake-quantized layers at the configuration's bits (a copy
    unless ``inplace``)."""
    q = sub if inplace else copy.deepcopy(sub)
    specs = joint_blocks(arch, q.config, q.resolution)
    f = FIXED_BITS
    _wrap_conv(q.stem, "conv", f, f, signed=True)  # the normalised image is signed
    fb = q.first_block
    if fb.inverted_bottleneck is not None:
        _wrap_conv(fb.inverted_bottleneck, "conv", f, f, signed=True)
    _wrap_conv(fb.depth_conv, "conv", f, f, signed=True)  # reads the stem's h-swish
    _wrap_conv(fb.point_linear, "conv", f, f, signed=False)  # after ReLU
    for block, spec in zip(q.blocks, specs):
        bits = spec.bit_dict
        _wrap_conv(block.inverted_bottleneck, "conv", bits["pw_w_bits"], bits["pw_a_bits"], signed=True)  # reads a linear bottleneck
        hswish = spec.act == "hswish"  # h-swish goes down to -0.375: a signed range there
        _wrap_conv(block.depth_conv, "conv", bits["dw_w_bits"], bits["dw_a_bits"], signed=hswish)
        _wrap_conv(block.point_linear, "conv", bits["pw_w_bits"], bits["pw_a_bits"], signed=hswish)
    h = q.head
    _wrap_conv(h.final_expand, "conv", f, f, signed=True)
    _wrap_conv(h.feature_mix, "conv", f, f, signed=True)  # pooled h-swish
    h.classifier = QuantLinear(h.classifier, f, f, signed_input=True)  # h-swish
    return q.eval()


def bit_report(arch: Any, config: Mapping[str, Any], resolution: int) -> List[Dict[str, Any]]:
    """Per searched block: shapes and its four bit-widths (the export of a search result)."""
    return [
        {"stage": s.stage, "index": s.index, "cin": s.cin, "cout": s.cout, "mid": s.mid, "kernel": s.kernel, "stride": s.stride, "input_size": s.size, **s.bit_dict}
        for s in joint_blocks(arch, config, resolution)
    ]
