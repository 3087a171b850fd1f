"""APQ's joint space: architecture, channel pruning and mixed precision, and its one-hot encoding.

A sub-network of the once-for-all MobileNetV3 supernet (:mod:`hwaml_ofa_nas`)
is chosen stage by stage. Every stage has a depth (OFA's {2, 3, 4}); every
block of it a kernel size ({3, 5, 7}), a middle ("expand") width from 4x to 6x
the block's input width in steps of 8 channels (APQ's fine-grained channel
pruning: the supernet's channels are sorted by importance, so a width keeps
the first, most important, channels), and four bit-widths from {4, 6, 8}:

* ``pw_w_bits`` / ``pw_a_bits``: weights and input activations of the two
  point-wise (1x1) convolutions of the block;
* ``dw_w_bits`` / ``dw_a_bits``: weights and input activations of its
  depth-wise convolution.

A 7x7 depth-wise kernel with 4-bit activations is invalid, as in the
published space (the reference refuses that combination): sampling, mutation
and crossover never produce it and validation names it.

Because the first block of a stage reads the previous stage's width and the
others read the stage's own, a stage is a group ``{"first": block, "rest":
[block, ...]}`` whose ``rest`` has ``depth - 1`` blocks::

    {"stage1": {"first": {"kernel": 5, "width": 64, "pw_w_bits": 8, ...},
                "rest": [{"kernel": 3, "width": 120, ...}]}, ...}

:class:`JointEncoder` turns a configuration into the paper's one-hot vector:
the architecture part (per block slot, one-hot kernel and one-hot width; the
slots beyond a stage's depth are all zeros, which encodes the depth) followed
by the quantization part (per block slot, one one-hot per bit-width). The
full-precision predictor reads the first part, the quantization-aware
predictor both.
"""

from __future__ import annotations

import copy

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hwaml import Categorical, Group, Repeated, SearchSpace, SpaceError

__all__ = [
    "BIT_KEYS",
    "JointSpaceConfig",
    "JointBlock",
    "MobileBlockChoice",
    "joint_space",
    "joint_blocks",
    "width_choices",
    "JointEncoder",
    "extreme_config",
]

#: the four per-block bit-widths, in encoding order
BIT_KEYS = ("pw_w_bits", "pw_a_bits", "dw_w_bits", "dw_a_bits")


@dataclass(frozen=True)
class JointSpaceConfig:
    """What the joint space allows (``space:`` of the evaluator config); the
    defaults are the published space. Shrink it for tests or a small CPU run.

    :param depth_choices: blocks per stage; ``None``: the supernet's (OFA: 2, 3, 4).
    :param kernel_choices: depth-wise kernels; ``None``: the supernet's (3, 5, 7).
    :param width_low: smallest middle width, as a multiple of the block's input width (APQ: 4).
    :param width_high: largest middle width multiple (APQ: 6; at most the supernet's largest expand ratio).
    :param width_step: channels between two width choices (APQ: 8).
    :param bit_choices: bit-widths of weights and activations (APQ: 4, 6, 8).
    :param resolution: input resolution (fixed in APQ); ``None``: the supernet's largest.
    :param forbid_k7_a4: refuse kernel 7 with 4-bit depth-wise activations (as published).
    """

    depth_choices: Optional[Sequence[int]] = None
    kernel_choices: Optional[Sequence[int]] = None
    width_low: float = 4.0
    width_high: float = 6.0
    width_step: int = 8
    bit_choices: Sequence[int] = (4, 6, 8)
    resolution: Optional[int] = None
    forbid_k7_a4: bool = True

    def __post_init__(self) -> None:
        for name in ("depth_choices", "kernel_choices", "bit_choices"):
            v = getattr(self, name)
            if v is not None:
                v = tuple(sorted({int(x) for x in v}))
                if not v:
                    raise ValueError(f"space.{name}: needs at least one value")
                object.__setattr__(self, name, v)
        if not 0 < self.width_low <= self.width_high:
            raise ValueError(f"space.width_low/width_high: need 0 < low <= high, got {self.width_low}, {self.width_high}")
        if self.width_step < 1:
            raise ValueError(f"space.width_step: must be >= 1, got {self.width_step}")
        if any(b < 2 or b > 16 for b in self.bit_choices):
            raise ValueError(f"space.bit_choices: bit-widths must be in 2..16, got {list(self.bit_choices)}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for k in ("depth_choices", "kernel_choices", "bit_choices"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


def width_choices(cin: int, low: float, high: float, step: int, max_mid: int) -> List[int]:
    """Middle widths from ``low * cin`` to ``high * cin`` in steps of ``step``
    (both ends rounded onto the step grid, inside), refused when above the
    supernet block's stored width ``max_mid``."""
    lo = int(math.ceil(low * cin / step)) * step
    hi = int(math.floor(high * cin / step)) * step
    if hi < lo:  # a narrow input: the grid has no point inside; keep the nearest one
        hi = lo
    if hi > max_mid:
        raise ValueError(
            f"space.width_high: {high}x of input width {cin} is {hi} channels but the supernet block stores only {max_mid} "
            f"(its largest expand ratio); lower width_high"
        )
    return list(range(lo, hi + 1, step))


class MobileBlockChoice(Group):
    """The choices of one block (kernel, width, four bit-widths) with the
    published invalid combination excluded everywhere the space makes or
    checks configurations."""

    def __init__(self, name: str, kernels: Sequence[int], widths: Sequence[int], bits: Sequence[int], forbid_k7_a4: bool):
        dims = [Categorical("kernel", list(kernels)), Categorical("width", list(widths))] + [Categorical(k, list(bits)) for k in BIT_KEYS]
        super().__init__(name, dims)
        self.forbid = bool(forbid_k7_a4) and 7 in kernels and 4 in bits
        if self.forbid and len(bits) == 1:
            # kernel 7 would always be invalid: take it out of the choices instead
            raise ValueError("space: kernel 7 with only 4-bit activations is invalid (APQ); add another bit-width or drop kernel 7")

    def allowed(self, value: Mapping[str, Any]) -> bool:
        return not (self.forbid and value.get("kernel") == 7 and value.get("dw_a_bits") == 4)

    def _retry(self, make, fallback):
        for _ in range(100):
            v = make()
            if self.allowed(v):
                return v
        return fallback()

    def _repair(self, v: Dict[str, Any], rng) -> Dict[str, Any]:
        # the other depth-wise activation widths, drawn at random
        others = [b for b in self.dims[5].choices if b != 4]
        v = dict(v)
        v["dw_a_bits"] = others[int(rng.integers(len(others)))]
        return v

    def sample(self, rng):
        return self._retry(lambda: super(MobileBlockChoice, self).sample(rng), lambda: self._repair(super(MobileBlockChoice, self).sample(rng), rng))

    def mutate(self, value, rng, prob):
        return self._retry(lambda: super(MobileBlockChoice, self).mutate(value, rng, prob), lambda: dict(value))

    def crossover(self, a, b, rng):
        return self._retry(lambda: super(MobileBlockChoice, self).crossover(a, b, rng), lambda: dict(a))

    def validate(self, value, path):
        out = super().validate(value, path)
        if not self.allowed(out):
            raise SpaceError(f"{path}.dw_a_bits" if path else "dw_a_bits", "kernel 7 with 4-bit depth-wise activations is invalid in APQ's space")
        return out

    def flatten(self, value, path, out):
        # the parameter names suggest() asks for: an Optuna replay of a stored
        # configuration (a resumed search, the journal mirror) finds each of them
        super().flatten(value, path, out)
        prefix = f"{path}." if path else ""
        if self.forbid and value.get("kernel") == 7 and prefix + "dw_a_bits" in out:
            out[prefix + "dw_a_bits_k7"] = out.pop(prefix + "dw_a_bits")

    def suggest(self, trial, path):
        # define-by-run: the depth-wise activation choices depend on the kernel
        prefix = f"{path}." if path else ""
        out = {
            "kernel": trial.suggest_categorical(prefix + "kernel", self.dims[0].choices),
            "width": trial.suggest_categorical(prefix + "width", self.dims[1].choices),
        }
        for d in self.dims[2:5]:
            out[d.name] = trial.suggest_categorical(prefix + d.name, d.choices)
        choices = self.dims[5].choices
        if self.forbid and out["kernel"] == 7:
            out["dw_a_bits"] = trial.suggest_categorical(prefix + "dw_a_bits_k7", [b for b in choices if b != 4])
        else:
            out["dw_a_bits"] = trial.suggest_categorical(prefix + "dw_a_bits", choices)
        return out


@dataclass(frozen=True)
class JointBlock:
    """One searched block of a joint configuration, with its shapes."""

    stage: str
    index: int  # position inside the stage
    cin: int
    cout: int
    stride: int
    kernel: int
    mid: int
    act: str
    se: bool
    size: int  # input spatial size
    bits: Tuple[int, int, int, int] = field(default=(8, 8, 8, 8))  # BIT_KEYS order

    @property
    def bit_dict(self) -> Dict[str, int]:
        return dict(zip(BIT_KEYS, self.bits))


def _resolve(arch: Any, cfg: JointSpaceConfig) -> Tuple[List[int], List[int], int]:
    depths = list(cfg.depth_choices or arch.depth_choices)
    kernels = list(cfg.kernel_choices or arch.kernel_choices)
    bad_d = [d for d in depths if d not in arch.depth_choices]
    bad_k = [k for k in kernels if k not in arch.kernel_choices]
    if bad_d:
        raise ValueError(f"space.depth_choices: {bad_d} are not among the supernet's depths {list(arch.depth_choices)}")
    if bad_k:
        raise ValueError(f"space.kernel_choices: {bad_k} are not among the supernet's kernels {list(arch.kernel_choices)}")
    res = int(cfg.resolution or max(arch.resolutions))
    if res not in arch.resolutions:
        raise ValueError(f"space.resolution: {res} is not one of the supernet's resolutions {list(arch.resolutions)}")
    return depths, kernels, res


def _stage_inputs(arch: Any) -> List[Tuple[int, int]]:
    """(input width of the stage's first block, stage width) per stage."""
    out = []
    cin = arch.scaled(arch.first_block_width)
    for width in arch.stage_widths:
        out.append((cin, width))
        cin = width
    return out


def _max_mid(arch: Any, cin: int) -> int:
    from hwaml_ofa_nas.elastic import make_divisible

    return make_divisible(round(cin * max(arch.expand_choices)), arch.divisor)


def joint_space(arch: Any, cfg: Optional[JointSpaceConfig] = None) -> SearchSpace:
    """The joint space over supernet shape ``arch`` (a
    :class:`hwaml_ofa_nas.SupernetConfig`); ``space.meta["apq"]`` describes
    the layout for the encoder, the APQ, AMC and HAQ searchers and the
    network builder."""
    cfg = cfg or JointSpaceConfig()
    depths, kernels, res = _resolve(arch, cfg)
    dims = []
    stages_meta = []
    for name, (cin, width) in zip(arch.stage_names, _stage_inputs(arch)):
        first_w = width_choices(cin, cfg.width_low, cfg.width_high, cfg.width_step, _max_mid(arch, cin))
        rest_w = width_choices(width, cfg.width_low, cfg.width_high, cfg.width_step, _max_mid(arch, width))
        first = MobileBlockChoice("first", kernels, first_w, cfg.bit_choices, cfg.forbid_k7_a4)
        rest = Repeated("rest", MobileBlockChoice("rest", kernels, rest_w, cfg.bit_choices, cfg.forbid_k7_a4), lengths=[d - 1 for d in depths])
        dims.append(Group(name, [first, rest]))
        stages_meta.append({"name": name, "first_widths": first_w, "rest_widths": rest_w})
    meta = {
        "apq": {
            "stages": stages_meta,
            "depth_choices": depths,
            "kernel_choices": kernels,
            "bit_choices": list(cfg.bit_choices),
            "resolution": res,
            "forbid_k7_a4": bool(cfg.forbid_k7_a4),
            "space": cfg.to_dict(),
        },
        "arch": arch.to_dict(),
    }
    return SearchSpace(dims, meta=meta, name="apq_joint")


def stage_blocks(config: Mapping[str, Any], stage: str) -> List[Mapping[str, Any]]:
    s = config[stage]
    return [s["first"]] + list(s["rest"])


def joint_blocks(arch: Any, config: Mapping[str, Any], resolution: int) -> List[JointBlock]:
    """The searched blocks of ``config`` in order, with their shapes and bits."""
    from hwaml_ofa_nas.supernet import conv_out

    size = conv_out(int(resolution), 2)  # after the stem (the fixed first block keeps the size)
    out: List[JointBlock] = []
    cin = arch.scaled(arch.first_block_width)
    for name, stage, width in zip(arch.stage_names, arch.stages, arch.stage_widths):
        for i, b in enumerate(stage_blocks(config, name)):
            stride = stage.stride if i == 0 else 1
            bits = tuple(int(b[k]) for k in BIT_KEYS)
            out.append(JointBlock(name, i, cin, width, stride, int(b["kernel"]), int(b["width"]), stage.act, stage.se, size, bits))
            size = conv_out(size, stride)
            cin = width
    return out


def widest_config(space: SearchSpace, config: Mapping[str, Any]) -> Dict[str, Any]:
    """``config`` with every block at its largest middle width (kernels, depths and
    bits kept): the unpruned network AMC's reconstruction matches."""
    meta = space.meta["apq"]
    out = copy.deepcopy(dict(config))
    for st in meta["stages"]:
        s = out[st["name"]]
        s["first"]["width"] = max(st["first_widths"])
        for blk in s["rest"]:
            blk["width"] = max(st["rest_widths"])
    return space.validate(out)


def extreme_config(space: SearchSpace, which: str = "max", bits: Optional[int] = None) -> Dict[str, Any]:
    """The largest (``"max"``) or smallest (``"min"``) configuration of a joint
    space: depth, kernel, width and bits all at that end (``bits`` overrides
    the bit-widths; kernel 7 with 4-bit activations is avoided)."""
    meta = space.meta["apq"]
    pick = max if which == "max" else min
    b = int(bits if bits is not None else pick(meta["bit_choices"]))
    depth = pick(meta["depth_choices"])
    kernel = pick(meta["kernel_choices"])
    cfg: Dict[str, Any] = {}
    for st in meta["stages"]:
        def block(widths):
            blk = {"kernel": kernel, "width": pick(widths), **{k: b for k in BIT_KEYS}}
            if meta["forbid_k7_a4"] and kernel == 7 and blk["dw_a_bits"] == 4:
                blk["dw_a_bits"] = min(x for x in meta["bit_choices"] if x != 4)
            return blk

        cfg[st["name"]] = {"first": block(st["first_widths"]), "rest": [block(st["rest_widths"]) for _ in range(depth - 1)]}
    return space.validate(cfg)


class JointEncoder:
    """APQ's one-hot encoding of a joint configuration.

    ``encode(config)`` returns ``(arch_part, quant_part)``; ``vector(config)``
    their concatenation. Per block slot (``max depth`` slots per stage): the
    architecture part is one-hot kernel then one-hot width, the quantization
    part one one-hot per bit-width (:data:`BIT_KEYS` order); the slots a
    stage's depth leaves out are zeros in both parts.
    """

    def __init__(self, meta: Mapping[str, Any]):
        try:
            self.stages = [dict(s) for s in meta["stages"]]
            self.kernels = list(meta["kernel_choices"])
            self.bits = list(meta["bit_choices"])
            self.max_depth = max(meta["depth_choices"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an APQ joint-space layout (space.meta['apq']): missing {exc}") from exc
        self.arch_slices: List[Tuple[int, int, List[int]]] = []  # (offset, width-offset, widths) per slot
        off = 0
        for st in self.stages:
            for j in range(self.max_depth):
                widths = st["first_widths"] if j == 0 else st["rest_widths"]
                self.arch_slices.append((off, off + len(self.kernels), list(widths)))
                off += len(self.kernels) + len(widths)
        self.n_arch = off
        self.n_slots = len(self.arch_slices)
        self.n_quant = self.n_slots * len(BIT_KEYS) * len(self.bits)

    @property
    def n_features(self) -> int:
        return self.n_arch + self.n_quant

    def encode(self, config: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
        arch = np.zeros(self.n_arch, dtype=np.float32)
        quant = np.zeros(self.n_quant, dtype=np.float32)
        nb = len(self.bits)
        for s, st in enumerate(self.stages):
            blocks = stage_blocks(config, st["name"])
            if len(blocks) > self.max_depth:
                raise ValueError(f"{st['name']}: {len(blocks)} blocks, the space allows at most {self.max_depth}")
            for j, b in enumerate(blocks):
                slot = s * self.max_depth + j
                k_off, w_off, widths = self.arch_slices[slot]
                try:
                    arch[k_off + self.kernels.index(int(b["kernel"]))] = 1.0
                    arch[w_off + widths.index(int(b["width"]))] = 1.0
                    for q, key in enumerate(BIT_KEYS):
                        quant[(slot * len(BIT_KEYS) + q) * nb + self.bits.index(int(b[key]))] = 1.0
                except ValueError as exc:
                    raise ValueError(f"{st['name']} block {j}: a value outside the space ({exc})") from exc
        return arch, quant

    def vector(self, config: Mapping[str, Any]) -> np.ndarray:
        a, q = self.encode(config)
        return np.concatenate([a, q])

    def matrix(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not configs:
            return np.zeros((0, self.n_features), dtype=np.float32)
        return np.stack([self.vector(c) for c in configs])
