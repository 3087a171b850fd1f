"""C99 code generation: a self-contained project that runs the planned int8 model.

The kernels, the runtime and the host programs are real C files shipped with
the package (``hwaml_tinyengine/csrc/``, read with :mod:`importlib.resources`);
Python writes only what depends on the model. A generated project holds

``model_config.h`` (generated)
    sizes and quantisation of the input and output, ``MODEL_ARENA_BYTES``.
``model.h``
    the API: ``model_input()``, ``model_run()``, ``model_output()``.
``model.c`` (generated)
    one static arena of exactly the planned size, the window tables, one
    specialised function per layer and the layer schedule with the patch loop of
    patch-based inference. Each layer function is an instantiation of a kernel
    template: ``model.c`` defines the template's ``TE_*`` macros (every shape,
    stride, padding, zero point and clamp a literal, so the compiler unrolls and
    folds) and includes it. Tensors live at the planner's arena offsets;
    in-place depthwise layers overwrite their input row by row (te_dwconv.h).
``te_runtime.h``, ``te_<op>.h``
    the fixed-point helpers (gemmlowp semantics) and the kernel templates the
    model uses (conv, pwconv, dwconv, linear, add, mul, avgpool, gap, relu, concat).
``weights.h`` (generated)
    int8 weights, int32 biases (the input zero point folded in where no padding
    can occur), Q31 multipliers and shifts, the tables of h-swish/h-sigmoid
    layers, all ``static const`` (Flash).
``main.c``
    host runner: ``model_run_host IN.bin OUT.bin`` reads int8 NHWC inputs,
    writes int8 outputs and prints the time per inference.
``test_main.c`` / ``test_data.h`` (generated)
    host test harness with inputs and the Python reference's outputs embedded;
    prints ``matched K/N`` and exits non-zero on any mismatch.
``Makefile``
    ``make`` builds both with ``-std=c99 -O2``; ``make test`` runs the harness.

Every layer function takes a window table: the region it computes (in
full-tensor coordinates) and, per input and output, where its buffer's origin
is and how wide it is. Outside the patch stage windows are whole tensors; inside
it, each patch has its own row of the table, produced by the planner's backward
receptive-field trace.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import networkx as nx
import numpy as np

from .ir import inputs_of
from .memory_planner import MemoryPlan, dw_scratch_layout, live_overlaps
from .quantize import ADD_LEFT_SHIFT, run_int8

__all__ = ["CProject", "generate_project", "build_project", "build_and_run", "run_test_harness", "kernel_templates", "c_source", "CFLAGS", "TEMPLATES", "STATIC_FILES"]

log = logging.getLogger(__name__)

#: the kernel template of every IR op
TEMPLATES: Dict[str, str] = {
    "conv": "te_conv.h",
    "pwconv": "te_pwconv.h",
    "dwconv": "te_dwconv.h",
    "linear": "te_linear.h",
    "add": "te_add.h",
    "mul": "te_mul.h",
    "avgpool": "te_avgpool.h",
    "global_avgpool": "te_gap.h",
    "relu": "te_relu.h",
    "concat": "te_concat.h",
}
#: files copied into every project unchanged
STATIC_FILES = ("model.h", "te_runtime.h", "main.c", "test_main.c", "Makefile", "fw_main.c", "startup.c", "te_semihost.h")
#: the packaged files that name the model (``model``) and are renamed per prefix
PREFIXED_FILES = ("model.h",)
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def c_source(name: str) -> str:
    """The text of a packaged C file (``csrc/<name>``)."""
    return resources.files("hwaml_tinyengine").joinpath("csrc").joinpath(name).read_text()


def _makefile_cflags() -> str:
    for line in c_source("Makefile").splitlines():
        if line.startswith("CFLAGS ?="):
            return line.split("?=", 1)[1].strip()
    raise RuntimeError("csrc/Makefile has no 'CFLAGS ?=' line")  # pragma: no cover - packaging error


#: compiler flags of the generated Makefile (used when make is not installed)
CFLAGS = _makefile_cflags()


@dataclass
class CProject:
    """A generated C project on disk."""

    path: Path
    arena_bytes: int
    input_size: int
    output_size: int
    n_test_vectors: int = 0
    #: the files written (names relative to ``path``)
    files: List[str] = field(default_factory=list)
    #: host time per inference of the last :func:`build_and_run`, ms
    last_ms: Optional[float] = None
    #: the model's C prefix (``<prefix>_run`` ...)
    prefix: str = "model"
    #: the QEMU machine of the firmware's core
    qemu_machine: str = "mps2-an386"

    @property
    def runner(self) -> Path:
        return self.path / "model_run_host"

    @property
    def tester(self) -> Path:
        return self.path / "model_test"


def _c_array(ctype: str, name: str, values: Sequence[int], per_line: int = 24, attr: str = "") -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)] or ["0"]
    return f"static const {ctype} {name}[{max(1, len(vals))}]{attr} = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def check_prefix(prefix: str) -> str:
    """A model prefix: a lower-case C identifier, not ``te``-reserved."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix) or prefix.startswith("te_") or prefix == "te":
        raise ValueError(f"model prefix must be a lower-case C identifier of at most 31 characters not starting with 'te_', got {prefix!r}")
    return prefix


def project_names(prefix: str = "model") -> Dict[str, str]:
    """The file names of a model with ``prefix``: header, config header, source, weights header."""
    check_prefix(prefix)
    if prefix == "model":
        return {"header": "model.h", "config": "model_config.h", "source": "model.c", "weights": "weights.h"}
    return {"header": f"{prefix}.h", "config": f"{prefix}_config.h", "source": f"{prefix}.c", "weights": f"{prefix}_weights.h"}


def _prefixed(text: str, prefix: str) -> str:
    """A packaged file that names the model ``model`` rewritten for ``prefix``."""
    if prefix == "model":
        return text
    return text.replace("model_config.h", f"{prefix}_config.h").replace("MODEL_", f"{prefix.upper()}_").replace("model_", f"{prefix}_").replace('"model"', f'"{prefix}"')


def _harness_header(prefix: str) -> str:
    head = "/* Generated by hwaml-tinyengine: the host and firmware harnesses call the model through these names. */\n"
    if prefix == "model":
        return head + '#include "model.h"\n'
    P = prefix.upper()
    maps = [("model_input", f"{prefix}_input"), ("model_run", f"{prefix}_run"), ("model_output", f"{prefix}_output")]
    maps += [(f"MODEL_{k}", f"{P}_{k}") for k in ("INPUT_SIZE", "OUTPUT_SIZE", "ARENA_BYTES", "N_LAYERS")]
    return head + f'#include "{prefix}.h"\n' + "".join(f"#define {a} {b}\n" for a, b in maps)


def _weights(qg: nx.DiGraph, n: str, cid: str) -> str:
    d = qg.nodes[n]
    op = d["op"]
    w = d["w_int8"]
    bias = d["bias_int32"].astype(np.int64).copy()
    src = inputs_of(qg, n)[0]
    zp_in = qg.nodes[src]["q"][1]
    if op in ("conv",):
        w = w.transpose(0, 2, 3, 1)  # O, kh, kw, I
    elif op == "pwconv":
        w = w.reshape(w.shape[0], -1)
        bias = bias - zp_in * w.astype(np.int64).sum(axis=1)
    elif op == "dwconv":
        # padding reads the input zero point, so -zp * sum(w) is constant per channel
        bias = bias - zp_in * w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
        w = w[:, 0].transpose(1, 2, 0)  # kh, kw, C
    elif op == "linear":
        bias = bias - zp_in * w.astype(np.int64).sum(axis=1)
    if np.abs(bias).max(initial=0) >= 2**31:
        raise OverflowError(f"layer {n}: folded bias does not fit int32")
    at = " TE_WEIGHTS_ATTR"
    text = (
        _c_array("int8_t", f"{cid}_w", w.reshape(-1), attr=at)
        + _c_array("int32_t", f"{cid}_b", bias, attr=at)
        + _c_array("int32_t", f"{cid}_m", d["mult"], attr=at)
        + _c_array("int8_t", f"{cid}_s", d["shift"], attr=at)
    )
    if "lut" in d:
        text += _c_array("int8_t", f"{cid}_lut", d["lut"], per_line=16, attr=at)
    return text


def requant_form(qg: nx.DiGraph, n: str) -> str:
    """``TE_RQ_FAST`` when every shift of the layer is in [-22, -1] and its
    accumulators provably stay under 2^30 in magnitude (then the inlined
    SMMLAR form with the zero point in the rounding offset is exact), else
    ``TE_RQ_EXACT``."""
    d = qg.nodes[n]
    op = d["op"]
    w = d["w_int8"]
    src = inputs_of(qg, n)[0]
    zp_in = int(qg.nodes[src]["q"][1])
    taps = int(np.prod(w.shape[1:]))
    bias = d["bias_int32"].astype(np.int64)
    if op in ("pwconv", "linear", "dwconv"):
        # raw int8 inputs (the zero point is in the bias): |x w| <= 128 * 128
        bias = bias - zp_in * w.astype(np.int64).reshape(w.shape[0], -1).sum(axis=1)
        bound = np.abs(bias).max(initial=0) + 128 * 128 * taps
    else:  # conv: x - zp in [-255, 255]
        bound = np.abs(bias).max(initial=0) + 255 * 128 * taps
    shift = np.asarray(d["shift"])
    # e = -shift in [1, 22]: the output zero point folds into the rounding offset without overflow
    fast = bool(np.all((shift <= -1) & (shift >= -22))) and bound < 2**30
    return "TE_RQ_FAST" if fast else "TE_RQ_EXACT"


def _check_dw_direct(qg: nx.DiGraph, n: str, row: Sequence[int]) -> None:
    """te_dwconv.h takes its direct path (taps read straight from the input) when
    the call's input window lies inside the tensor; in place it also needs each
    output to land before the first tap of the next one (its write-order check,
    else it falls back to the padded ring). The latency model's features assume
    the check passes: the planner's buffers start where the input window does,
    so it always does; this makes a layout that breaks it an error here."""
    d = qg.nodes[n]
    k, s, p = d["kernel"], d["stride"], d["padding"]
    _, ih, iw = qg.nodes[inputs_of(qg, n)[0]]["shape"]
    oy0, oy1, ox0, ox1, oby, obx, obw, iby, ibx, ibw = row[:10]
    iyf, ix0 = oy0 * s - p, ox0 * s - p
    if not (iyf >= 0 and (oy1 - 1) * s - p + k <= ih and ix0 >= 0 and (ox1 - 1) * s - p + k <= iw):
        return
    if not ((oy0 - oby) * obw + (ox0 - obx) < (iyf - iby) * ibw + ix0 + s - ibx and obw <= s * ibw):
        raise RuntimeError(f"{n}: in-place depthwise buffers {tuple(row)} break the direct path's write order (planner layout changed?)")


def _window_rows(plan: MemoryPlan, n: str, patch: int) -> List[int]:
    g = plan.graph
    stage = plan.patch is not None and n in plan.patch.layers
    _, h, w = g.nodes[n]["shape"]
    if stage:
        region = plan.patch.regions[n][patch]  # type: ignore[union-attr]
    else:
        region = (0, h, 0, w)
    out_buf = plan.region(n, patch) if stage else (0, h, 0, w)
    row = [region[0], region[1], region[2], region[3], out_buf[0], out_buf[2], out_buf[3] - out_buf[2]]
    for src in inputs_of(g, n):
        if stage:
            r = plan.region(src, patch)
        else:  # outside the patch stage every tensor is whole
            _, sh, sw = g.nodes[src]["shape"]
            r = (0, sh, 0, sw)
        row += [r[0], r[2], r[3] - r[2]]
    return row


def _defines(values: Dict[str, Any]) -> List[str]:
    """``#define TE_<NAME> value`` lines (numbers parenthesised, so negatives are safe)."""
    out = []
    for k, v in values.items():
        text = str(v) if isinstance(v, str) else f"({int(v)})"
        out.append(f"#define TE_{k} {text}")
    return out


def kernel_templates(plan: MemoryPlan) -> List[str]:
    """The kernel template files (``te_<op>.h``) the plan's layers use, in first-use order."""
    out: List[str] = []
    for n in plan.steps:
        t = TEMPLATES[plan.graph.nodes[n]["op"]]
        if t not in out:
            out.append(t)
    return out


def _layer_code(qg: nx.DiGraph, plan: MemoryPlan, n: str, fn: str, cid: str) -> str:
    """The instantiation of one layer's kernel template (C text).

    The text defines the template's ``TE_*`` macros (every shape, stride,
    padding, zero point and clamp a literal) and includes the template, which
    expands to one specialised ``static`` function named ``fn``.
    """
    d = qg.nodes[n]
    op = d["op"]
    ins = inputs_of(qg, n)
    c, oh, ow = d["shape"]
    cin, ih, iw = qg.nodes[ins[0]]["shape"]
    zp_in = qg.nodes[ins[0]]["q"][1]
    src = str(d.get("source", "")).replace("*/", "* /")
    # a table activation: the kernel requantises to the pre-activation, the table maps it
    zp_out = d["q_pre"][1] if "lut" in d else d["q"][1]
    clamp = {"ZPOUT": zp_out, "QMIN": d["qmin"], "QMAX": d["qmax"]}
    consts = {"WEIGHT": f"{cid}_w", "BIAS": f"{cid}_b", "MULT": f"{cid}_m", "SHIFT": f"{cid}_s"}
    if "lut" in d:
        consts["LUT"] = f"{cid}_lut"
    if op in ("conv", "pwconv", "dwconv", "linear"):
        consts["RQ"] = requant_form(qg, n)
    extra: List[str] = []
    if op == "conv":
        k, st, pad = d["kernel"], d["stride"], d["padding"]
        what = f"conv {k}x{k} stride {st} pad {pad}, {cin} -> {c}, {ih}x{iw} -> {oh}x{ow}"
        values: Dict[str, Any] = {**consts, "K": k, "S": st, "P": pad, "CIN": cin, "COUT": c, "IH": ih, "IW": iw, "ZPIN": zp_in, **clamp}
    elif op == "pwconv":
        what = f"pointwise conv stride {d['stride']}, {cin} -> {c}, {ih}x{iw} -> {oh}x{ow}"
        values = {**consts, "S": d["stride"], "CIN": cin, "COUT": c, **clamp}
    elif op == "dwconv":
        inplace = n in plan.inplace
        k, st, pad = d["kernel"], d["stride"], d["padding"]
        what = f"depthwise {k}x{k} stride {st} pad {pad}, {c} channels, {ih}x{iw} -> {oh}x{ow}" + (", in place" if inplace else "")
        tmpb, _ = dw_scratch_layout(qg, n, plan.patch, inplace)
        values = {**consts, "K": k, "S": st, "P": pad, "C": c, "IH": ih, "IW": iw, "ZPIN": zp_in, **clamp, "INPLACE": int(inplace), "TMPB": tmpb}
    elif op == "linear":
        what = f"fully connected {cin * ih * iw} -> {c}"
        values = {**consts, "IN": cin * ih * iw, "OUT": c, **clamp}
    elif op == "add":
        (ma, sa), (mb, sb) = d["add_mult"]
        mo, so = d["out_mult"]
        what = f"residual add, {c} channels"
        values = {
            "C": c, "ZA": qg.nodes[ins[0]]["q"][1], "ZB": qg.nodes[ins[1]]["q"][1], "ZO": d["q"][1], "LS": ADD_LEFT_SHIFT,
            "MA": ma, "SA": sa, "MB": mb, "SB": sb, "MO": mo, "SO": so, "QMIN": d["qmin"], "QMAX": d["qmax"],
        }  # fmt: skip
    elif op == "mul":
        m, sh = d["mul_mult"]
        what = f"channel scaling, {c} channels"
        values = {"C": c, "ZX": qg.nodes[ins[0]]["q"][1], "ZS": qg.nodes[ins[1]]["q"][1], "ZO": d["q"][1], "M": m, "SH": sh, "QMIN": d["qmin"], "QMAX": d["qmax"]}
    elif op == "avgpool":
        k = d["kernel"]
        what = f"average pool {k}x{k} stride {d['stride']}, {c} channels"
        values = {"K": k, "S": d["stride"], "C": c, "QMIN": d["qmin"], "QMAX": d["qmax"]}
    elif op == "global_avgpool":
        what = f"global average pool over {ih}x{iw}, {c} channels"
        values = {"C": c, "HW": ih * iw, "QMIN": d["qmin"], "QMAX": d["qmax"]}
    elif op == "relu":
        what = "standalone clamp"
        values = {"C": c, "QMIN": d["qmin"], "QMAX": d["qmax"]}
    elif op == "concat":
        parts: List[int] = []
        for s_, (m, sh) in zip(ins, d["in_mult"]):
            parts += [qg.nodes[s_]["shape"][0], qg.nodes[s_]["q"][1], m, sh]
        extra.append(_c_array("int32_t", f"{cid}_parts", parts, per_line=4))
        what = f"concatenation of {len(ins)} tensors along channels"
        values = {"NIN": len(ins), "PARTS": f"{cid}_parts", "COUT": c, **clamp}
    else:  # pragma: no cover - the importer admits no other op
        raise AssertionError(op)
    if d["act"] != "none":
        what += f", {d['act']}"
    lines = [f"/* {cid} {n}: {what}" + (f" ({src})" if src else "") + " */", *extra, f"#define TE_FN {fn}", *_defines(values), f'#include "{TEMPLATES[op]}"', ""]
    return "\n".join(lines)


def _call(qg: nx.DiGraph, plan: MemoryPlan, n: str, fn: str, win: str) -> str:
    op = qg.nodes[n]["op"]
    ins = inputs_of(qg, n)
    out = f"TE_ARENA + {plan.offset(n)}"
    args_in = [f"TE_ARENA + {plan.offset(s)}" for s in ins]
    so = plan.scratch_offset(n)
    if op in ("conv", "pwconv", "linear"):
        scratch = f"(int16_t *)(void *)(TE_ARENA + {so})" if so is not None else "(int16_t *)0"
        return f"{fn}({args_in[0]}, {out}, {scratch}, {win});"
    if op == "dwconv":
        scratch = f"TE_ARENA + {so}" if so is not None else "(int8_t *)0"
        return f"{fn}({args_in[0]}, {out}, {scratch}, {win});"
    if op in ("add", "mul"):
        return f"{fn}({args_in[0]}, {args_in[1]}, {out}, {win});"
    if op == "concat":
        return f"{{ const int8_t *const ins[{len(ins)}] = {{{', '.join(args_in)}}}; {fn}(ins, {out}, {win}); }}"
    return f"{fn}({args_in[0]}, {out}, {win});"


def generate_model_sources(qg: nx.DiGraph, plan: MemoryPlan, prefix: str = "model") -> Dict[str, str]:
    """The generated files of a quantised graph and its plan: the config header,
    the source and the weights header (:func:`project_names`: ``model_config.h``,
    ``model.c``, ``weights.h`` for the default prefix). The source includes the
    packaged :func:`kernel_templates` of the plan and :data:`STATIC_FILES`; every
    public name carries ``prefix``."""
    if live_overlaps(plan):
        raise AssertionError(f"memory plan has overlapping live buffers: {live_overlaps(plan)[:3]}")
    names = project_names(prefix)
    P = prefix.upper()
    inp, outp = qg.graph["input"], qg.graph["output"]
    c_in, h_in, w_in = qg.nodes[inp]["shape"]
    out_size = int(np.prod(qg.nodes[outp]["shape"]))
    s_in, zp_in = qg.nodes[inp]["q"]
    s_out, zp_out = qg.nodes[outp]["q"]
    config = f"""/* Generated by hwaml-tinyengine: sizes and quantisation of the model (see {names["header"]}). */
#ifndef {P}_CONFIG_H_
#define {P}_CONFIG_H_

#define {P}_ARENA_BYTES {plan.arena_bytes}
#define {P}_INPUT_H {h_in}
#define {P}_INPUT_W {w_in}
#define {P}_INPUT_C {c_in}
#define {P}_INPUT_SIZE {c_in * h_in * w_in}
#define {P}_OUTPUT_SIZE {out_size}
#define {P}_INPUT_SCALE {float(s_in)!r}f
#define {P}_INPUT_ZERO_POINT {zp_in}
#define {P}_OUTPUT_SCALE {float(s_out)!r}f
#define {P}_OUTPUT_ZERO_POINT {zp_out}
#define {P}_N_LAYERS {len(plan.steps)}

#endif
"""
    guard = f"TE_{P}_WEIGHTS_H_"
    weights = ["/* Generated by hwaml-tinyengine: constants in Flash (TE_WEIGHTS_ATTR). */", f"#ifndef {guard}", f"#define {guard}", "#include <stdint.h>", ""]
    funcs: List[str] = []
    tables: List[str] = []
    ids = {n: f"L{i}" for i, n in enumerate(plan.steps)}
    marks = {n: i for i, n in enumerate(plan.steps)}
    stage = plan.patch.layers if plan.patch is not None else []
    npatch = plan.patch.n**2 if plan.patch is not None else 1
    at = " TE_WEIGHTS_ATTR"
    for n in plan.steps:
        cid = ids[n]
        fn = f"{cid}_{qg.nodes[n]['op']}"
        if qg.nodes[n]["op"] in ("conv", "pwconv", "dwconv", "linear"):
            weights.append(_weights(qg, n, cid))
        funcs.append(_layer_code(qg, plan, n, fn, cid))
        if n in stage:
            rows = [_window_rows(plan, n, p) for p in range(npatch)]
            if qg.nodes[n]["op"] == "dwconv" and n in plan.inplace:
                for r in rows:
                    _check_dw_direct(qg, n, r)
            width = len(rows[0])
            flat = [v for r in rows for v in r]
            tables.append(_c_array("int16_t", f"{cid}_win", flat, per_line=width, attr=at))
        else:
            tables.append(_c_array("int16_t", f"{cid}_win", _window_rows(plan, n, 0), attr=at))
    weights.append("#endif")
    calls = []
    if stage:
        calls.append(f"    /* patch-based stage: {plan.patch.n}x{plan.patch.n} patches of '{plan.patch.split}' */")  # type: ignore[union-attr]
        calls.append(f"    for (p = 0; p < {npatch}; p++) {{")
        for n in stage:
            width = len(_window_rows(plan, n, 0))
            calls.append("        " + _call(qg, plan, n, f"{ids[n]}_{qg.nodes[n]['op']}", f"{ids[n]}_win + p * {width}") + f" TE_MARK({marks[n]});")
        calls.append("    }")
    for n in plan.steps:
        if n in stage:
            continue
        calls.append("    " + _call(qg, plan, n, f"{ids[n]}_{qg.nodes[n]['op']}", f"{ids[n]}_win") + f" TE_MARK({marks[n]});")
    body = [f"void {prefix}_run(void) {{", "    int p = 0;", "    (void)p;", *calls, "}"]
    source = "\n".join(
        [
            f"/* Generated by hwaml-tinyengine. {len(plan.steps)} layers, arena {plan.arena_bytes} bytes"
            + (f", patch stage {plan.patch.n}x{plan.patch.n} up to '{plan.patch.split}'" if plan.patch else "")
            + ". */",
            "#include <stdint.h>",
            f'#include "{names["header"]}"',
            '#include "te_runtime.h"',
            f'#include "{names["weights"]}"',
            "",
            f"#ifndef {P}_ARENA_ATTR",
            f"#define {P}_ARENA_ATTR TE_ARENA_ATTR",
            "#endif",
            "/* The one arena: every activation and kernel buffer lives here at a planned offset. */",
            f"static union {{ int32_t align; int8_t bytes[{max(4, plan.arena_bytes)}]; }} te_arena {P}_ARENA_ATTR;",
            "#define TE_ARENA (te_arena.bytes)",
            "",
            "/* ---- window tables: region computed, then output/input buffer origin and width ---- */",
            *tables,
            "/* ---- per-layer kernels: each block instantiates a kernel template (te_<op>.h) ---- */",
            *funcs,
            f"int8_t *{prefix}_input(void) {{ return TE_ARENA + {plan.offset(inp)}; }}",
            f"const int8_t *{prefix}_output(void) {{ return TE_ARENA + {plan.offset(outp)}; }}",
            "",
            *body,
            "",
        ]
    )
    return {names["config"]: config, names["source"]: source, names["weights"]: "\n".join(weights) + "\n"}


def _test_data(inputs: np.ndarray, expected: np.ndarray) -> str:
    n = len(inputs)
    lines = ["/* Generated: inputs and the Python int8 reference's outputs. */", "#include <stdint.h>", f"#define TEST_N {n}"]
    rows_in = ",\n".join("    {" + ", ".join(str(int(v)) for v in x.reshape(-1)) + "}" for x in inputs)
    rows_out = ",\n".join("    {" + ", ".join(str(int(v)) for v in y.reshape(-1)) + "}" for y in expected)
    lines.append(f"static const int8_t test_inputs[{n}][MODEL_INPUT_SIZE] = {{\n{rows_in}\n}};")
    lines.append(f"static const int8_t test_expected[{n}][MODEL_OUTPUT_SIZE] = {{\n{rows_out}\n}};")
    return "\n".join(lines) + "\n"


def generate_project(
    qg: nx.DiGraph, plan: MemoryPlan, out_dir: Any, test_inputs: Optional[np.ndarray] = None, profile: Any = None, prefix: str = "model"
) -> CProject:
    """Write the C project; ``test_inputs`` (int8 NHWC) are embedded in the
    harnesses with the Python reference's outputs. ``profile`` (a
    :class:`~.device.DeviceProfile` or a profile name; default ``stm32f746``)
    selects the firmware's core flags and linker scripts; ``prefix`` names the
    model's C API (``<prefix>_run`` ...)."""
    from .device import load_profile
    from .firmware import firmware_files, firmware_target

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = project_names(prefix)
    files = generate_model_sources(qg, plan, prefix)
    if test_inputs is None:
        rng = np.random.default_rng(0)
        test_inputs = rng.integers(-128, 128, size=(4, *_input_hwc(qg)), dtype=np.int64).astype(np.int8)
    test_inputs = np.asarray(test_inputs, dtype=np.int8)
    expected = run_int8(qg, test_inputs)
    files["test_data.h"] = _test_data(test_inputs, expected)
    files["te_harness.h"] = _harness_header(prefix)
    prof = load_profile(profile or "stm32f746") if not hasattr(profile, "device") else profile
    files.update(firmware_files(firmware_target(prof), names["source"]))
    for name in (*STATIC_FILES, *kernel_templates(plan)):
        text = c_source(name)
        if name in PREFIXED_FILES:
            files[names["header"]] = _prefixed(text, prefix)
        else:
            files[name] = text
    for name, text in files.items():
        (out / name).write_text(text)
    arduino = arduino_library(out, files, prefix, kernel_templates(plan))
    c, h, w = qg.nodes[qg.graph["input"]]["shape"]
    proj = CProject(out, plan.arena_bytes, c * h * w, int(np.prod(qg.nodes[qg.graph["output"]]["shape"])), len(test_inputs), files=sorted(files))
    proj.prefix = prefix
    proj.files += [str(p.relative_to(out)) for p in sorted(arduino.rglob("*")) if p.is_file()]
    proj.qemu_machine = firmware_target(prof).qemu_machine
    return proj


#: files of a project that are no part of the model library (host and firmware programs, build files)
_NOT_LIBRARY = ("main.c", "test_main.c", "fw_main.c", "startup.c", "te_semihost.h", "te_harness.h", "test_data.h", "Makefile", "firmware.mk", "firmware.ld", "qemu.ld")


def arduino_library(out: Path, files: Dict[str, str], prefix: str, templates: Sequence[str]) -> Path:
    """An Arduino library of the model's sources: ``arduino/<prefix>/``
    (``library.properties``, ``src/`` with the model and the kernels it uses,
    ``examples/<prefix>_run/<prefix>_run.ino``, a sketch that runs the model
    on a zero input and prints the top class and the time)."""
    names = project_names(prefix)
    lib = out / "arduino" / prefix
    src = lib / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if name not in _NOT_LIBRARY:
            (src / name).write_text(text)
    P = prefix.upper()
    (lib / "library.properties").write_text(
        f"name={prefix}\nversion=1.0.0\nauthor=hwaml-tinyengine\nmaintainer=hwaml-tinyengine\n"
        f"sentence=int8 model {prefix} generated by hwaml-tinyengine (static arena, weights in Flash).\n"
        f"paragraph=Call {prefix}_input(), {prefix}_run(), {prefix}_output(); see {names['header']}.\n"
        f"category=Data Processing\nurl=https://github.com/\narchitectures=*\nincludes={names['header']}\n"
    )
    ex = lib / "examples" / f"{prefix}_run"
    ex.mkdir(parents=True, exist_ok=True)
    (ex / f"{prefix}_run.ino").write_text(
        f"""// Runs the model {prefix} once a second on a constant input and prints the top output and the time.
#include <{names['header']}>

void setup() {{
  Serial.begin(115200);
}}

void loop() {{
  int8_t *in = {prefix}_input();
  for (int i = 0; i < {P}_INPUT_SIZE; i++) in[i] = {P}_INPUT_ZERO_POINT;
  unsigned long t0 = micros();
  {prefix}_run();
  unsigned long t1 = micros();
  const int8_t *out = {prefix}_output();
  int best = 0;
  for (int i = 1; i < {P}_OUTPUT_SIZE; i++) if (out[i] > out[best]) best = i;
  Serial.print("top ");
  Serial.print(best);
  Serial.print(" us ");
  Serial.println(t1 - t0);
  delay(1000);
}}
"""
    )
    return lib


def _input_hwc(qg: nx.DiGraph) -> tuple:
    c, h, w = qg.nodes[qg.graph["input"]]["shape"]
    return (h, w, c)


def _compiler() -> str:
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise RuntimeError(f"C compiler {cc!r} not found (install gcc or set CC)")
    return cc


def build_project(project: CProject, target: str = "all") -> None:
    """Compile with make when available, else call the compiler directly."""
    cc = _compiler()
    t0 = time.perf_counter()
    if shutil.which("make"):
        cmd = ["make", "-s", "-C", str(project.path.resolve()), f"CC={cc}", target]
    else:
        srcs = {"model_run_host": ["main.c"], "model_test": ["test_main.c"]}
        for exe, main in srcs.items():
            if target in ("all", exe):
                subprocess.run([cc, *CFLAGS.split(), "-o", exe, *main, project_names(project.prefix)["source"]], cwd=project.path, check=True, capture_output=True, text=True)
        return
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building {project.path} failed:\n{res.stdout}\n{res.stderr}")
    log.info("built %s in %.1fs", project.path, time.perf_counter() - t0)


def build_and_run(project: CProject, inputs: np.ndarray, repeat: int = 1) -> np.ndarray:
    """Build the host runner and run it on int8 NHWC ``inputs``; returns the
    int8 outputs ``(N, F)``. The host time per inference is in ``project.last_ms``."""
    if not project.runner.exists():
        build_project(project, "model_run_host")
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    if inputs[0].size != project.input_size:
        raise ValueError(f"inputs have {inputs[0].size} values per sample, the model takes {project.input_size}")
    fin, fout = project.path / "inputs.bin", project.path / "outputs.bin"
    fin.write_bytes(inputs.tobytes())
    res = subprocess.run([str(project.runner.resolve()), str(fin.resolve()), str(fout.resolve()), str(int(repeat))], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{project.runner} failed ({res.returncode}): {res.stderr}")
    parts = res.stdout.split()
    project.last_ms = float(parts[parts.index("ms_per_inference") + 1])
    return np.frombuffer(fout.read_bytes(), dtype=np.int8).reshape(len(inputs), project.output_size)


def run_test_harness(project: CProject) -> Dict[str, Any]:
    """``make test``: returns matched/total and the harness output."""
    if not project.tester.exists():
        build_project(project, "model_test")
    res = subprocess.run([str(project.tester.resolve())], capture_output=True, text=True, cwd=project.path.resolve())
    matched, total = 0, project.n_test_vectors
    for line in res.stdout.splitlines():
        if line.startswith("matched "):
            matched, total = (int(v) for v in line.split()[1].split("/"))
    return {"ok": res.returncode == 0 and matched == total, "matched": matched, "total": total, "stdout": res.stdout}
