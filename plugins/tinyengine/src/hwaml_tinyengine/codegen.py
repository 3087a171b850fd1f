"""C99 code generation: a self-contained project that runs the planned int8 model.

The generated project holds

``model.h`` / ``model.c``
    one static arena of exactly the planned size, one specialised function per
    layer (every shape, stride, padding, zero point and clamp is a literal, so
    the compiler unrolls and folds), the layer schedule, and the patch loop of
    patch-based inference. Tensors live at the planner's arena offsets; in-place
    depthwise layers overwrite their input through a one-channel buffer.
``weights.h``
    int8 weights, int32 biases (the input zero point folded in where no padding
    can occur), Q31 multipliers and shifts, all ``static const`` (Flash).
``main.c``
    host runner: ``model_run_host IN.bin OUT.bin`` reads int8 NHWC inputs,
    writes int8 outputs and prints the time per inference.
``test_main.c`` / ``test_data.h``
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
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Dict, List, Optional, Sequence

import networkx as nx
import numpy as np

from .ir import inputs_of
from .memory_planner import MemoryPlan, live_overlaps

__all__ = ["CProject", "generate_project", "build_project", "build_and_run", "run_test_harness", "CFLAGS"]

log = logging.getLogger(__name__)

CFLAGS = "-std=c99 -O2 -Wall -Wextra -pedantic"


@dataclass
class CProject:
    """A generated C project on disk."""

    path: Path
    arena_bytes: int
    input_size: int
    output_size: int
    n_test_vectors: int = 0

    @property
    def runner(self) -> Path:
        return self.path / "model_run_host"

    @property
    def tester(self) -> Path:
        return self.path / "model_test"


_RUNTIME = r"""
/* ---- fixed-point helpers: gemmlowp semantics, exact in C99 ---- */
static int32_t te_srdhm(int32_t a, int32_t b) {
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t te_rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

static int32_t te_requant(int32_t acc, int32_t mult, int shift) {
    int64_t x = (int64_t)acc * ((int64_t)1 << (shift > 0 ? shift : 0));
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    return te_rdbpot(te_srdhm((int32_t)x, mult), shift > 0 ? 0 : -shift);
}

static int8_t te_clamp(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

static int32_t te_rounded_div(int32_t acc, int32_t n) {
    return acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
}
"""

# Window table layout (int16): oy0 oy1 ox0 ox1 | out: by bx bw | in_k: by bx bw ...
_WIN_HEAD = r"""    const int oy0 = win[0], oy1 = win[1], ox0 = win[2], ox1 = win[3];
    const int oby = win[4], obx = win[5], obw = win[6];
"""

_CONV = Template(
    r"""
/* $name: conv ${K}x${K} stride $S pad $P, $CIN -> $COUT, ${IH}x${IW} -> ${OH}x${OW} ($src) */
static void $fn(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
$head    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, ky, kx, c, co, i;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            int16_t *cp = col;
            const int8_t *wp = ${W}_w;
            int8_t *dst = out + ((oy - oby) * obw + (ox - obx)) * $COUT;
            for (ky = 0; ky < $K; ky++) {
                const int iy = oy * $S - $P + ky;
                for (kx = 0; kx < $K; kx++) {
                    const int ix = ox * $S - $P + kx;
                    if (iy < 0 || iy >= $IH || ix < 0 || ix >= $IW) {
                        for (c = 0; c < $CIN; c++) *cp++ = 0;
                    } else {
                        const int8_t *src = in + ((iy - iby) * ibw + (ix - ibx)) * $CIN;
                        for (c = 0; c < $CIN; c++) *cp++ = (int16_t)(src[c] - ($ZPIN));
                    }
                }
            }
            for (co = 0; co < $COUT; co++) {
                int32_t acc = ${W}_b[co];
                for (i = 0; i < $KKC; i++) acc += (int32_t)col[i] * wp[i];
                wp += $KKC;
                dst[co] = te_clamp(te_requant(acc, ${W}_m[co], ${W}_s[co]) + ($ZPOUT), $QMIN, $QMAX);
            }
        }
    }
}
"""
)

_PWCONV = Template(
    r"""
/* $name: pointwise conv stride $S, $CIN -> $COUT, ${IH}x${IW} -> ${OH}x${OW} ($src) */
static void $fn(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
$head    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, c, co;
    (void)col;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *src = in + ((oy * $S - iby) * ibw + (ox * $S - ibx)) * $CIN;
            int8_t *dst = out + ((oy - oby) * obw + (ox - obx)) * $COUT;
            const int8_t *wp = ${W}_w;
            for (co = 0; co < $COUT; co++) {
                int32_t acc = ${W}_b[co]; /* input zero point folded into the bias */
                for (c = 0; c < $CIN; c++) acc += (int32_t)src[c] * wp[c];
                wp += $CIN;
                dst[co] = te_clamp(te_requant(acc, ${W}_m[co], ${W}_s[co]) + ($ZPOUT), $QMIN, $QMAX);
            }
        }
    }
}
"""
)

_DWCONV = Template(
    r"""
/* $name: depthwise ${K}x${K} stride $S pad $P, $C channels, ${IH}x${IW} -> ${OH}x${OW}$inplace_note ($src) */
static void $fn(const int8_t *in, int8_t *out, int8_t *tmp, const int16_t *win) {
$head    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0;
    int oy, ox, ky, kx, c;
    (void)tmp; (void)ow; (void)oby; (void)obx; (void)obw;
    for (c = 0; c < $C; c++) {
        for (oy = oy0; oy < oy1; oy++) {
            for (ox = ox0; ox < ox1; ox++) {
                int32_t acc = ${W}_b[c];
                for (ky = 0; ky < $K; ky++) {
                    const int iy = oy * $S - $P + ky;
                    if (iy < 0 || iy >= $IH) continue;
                    for (kx = 0; kx < $K; kx++) {
                        const int ix = ox * $S - $P + kx;
                        if (ix < 0 || ix >= $IW) continue;
                        acc += (int32_t)(in[((iy - iby) * ibw + (ix - ibx)) * $C + c] - ($ZPIN)) * ${W}_w[(ky * $K + kx) * $C + c];
                    }
                }
                $store = te_clamp(te_requant(acc, ${W}_m[c], ${W}_s[c]) + ($ZPOUT), $QMIN, $QMAX);
            }
        }
$copy_back    }
}
"""
)

_INPLACE_COPY = r"""        {   /* channel c of the input is dead: write the output over it */
            const int n = (oy1 - oy0) * ow;
            int p;
            for (p = 0; p < n; p++) out[p * $C + c] = tmp[p];
        }
"""

_LINEAR = Template(
    r"""
/* $name: fully connected $IN -> $OUT ($src) */
static void $fn(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    int o, i;
    const int8_t *wp = ${W}_w;
    (void)col; (void)win;
    for (o = 0; o < $OUT; o++) {
        int32_t acc = ${W}_b[o]; /* input zero point folded into the bias */
        for (i = 0; i < $IN; i++) acc += (int32_t)in[i] * wp[i];
        wp += $IN;
        out[o] = te_clamp(te_requant(acc, ${W}_m[o], ${W}_s[o]) + ($ZPOUT), $QMIN, $QMAX);
    }
}
"""
)

_ADD = Template(
    r"""
/* $name: residual add, $C channels ($src) */
static void $fn(const int8_t *a, const int8_t *b, int8_t *out, const int16_t *win) {
$head    const int aby = win[7], abx = win[8], abw = win[9];
    const int bby = win[10], bbx = win[11], bbw = win[12];
    int oy, ox, c;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *pa = a + ((oy - aby) * abw + (ox - abx)) * $C;
            const int8_t *pb = b + ((oy - bby) * bbw + (ox - bbx)) * $C;
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * $C;
            for (c = 0; c < $C; c++) {
                const int32_t xa = te_requant((pa[c] - ($ZA)) * (1 << $LS), $MA, $SA);
                const int32_t xb = te_requant((pb[c] - ($ZB)) * (1 << $LS), $MB, $SB);
                po[c] = te_clamp(te_requant(xa + xb, $MO, $SO) + ($ZO), $QMIN, $QMAX);
            }
        }
    }
}
"""
)

_AVGPOOL = Template(
    r"""
/* $name: average pool ${K}x${K} stride $S, $C channels ($src) */
static void $fn(const int8_t *in, int8_t *out, const int16_t *win) {
$head    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, ky, kx, c;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * $C;
            for (c = 0; c < $C; c++) {
                int32_t acc = 0;
                for (ky = 0; ky < $K; ky++)
                    for (kx = 0; kx < $K; kx++)
                        acc += in[((oy * $S + ky - iby) * ibw + (ox * $S + kx - ibx)) * $C + c];
                po[c] = te_clamp(te_rounded_div(acc, $KK), $QMIN, $QMAX);
            }
        }
    }
}
"""
)

_GAP = Template(
    r"""
/* $name: global average pool over ${IH}x${IW}, $C channels ($src) */
static void $fn(const int8_t *in, int8_t *out, const int16_t *win) {
    int p, c;
    (void)win;
    for (c = 0; c < $C; c++) {
        int32_t acc = 0;
        for (p = 0; p < $HW; p++) acc += in[p * $C + c];
        out[c] = te_clamp(te_rounded_div(acc, $HW), $QMIN, $QMAX);
    }
}
"""
)

_RELU = Template(
    r"""
/* $name: standalone clamp ($src) */
static void $fn(const int8_t *in, int8_t *out, const int16_t *win) {
$head    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, c;
    for (oy = oy0; oy < oy1; oy++)
        for (ox = ox0; ox < ox1; ox++)
            for (c = 0; c < $C; c++)
                out[((oy - oby) * obw + (ox - obx)) * $C + c] = te_clamp(in[((oy - iby) * ibw + (ox - ibx)) * $C + c], $QMIN, $QMAX);
}
"""
)


def _c_array(ctype: str, name: str, values: Sequence[int], per_line: int = 24) -> str:
    vals = [str(int(v)) for v in values]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)] or ["0"]
    return f"static const {ctype} {name}[{max(1, len(vals))}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


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
        w = w[:, 0].transpose(1, 2, 0)  # kh, kw, C
    elif op == "linear":
        bias = bias - zp_in * w.astype(np.int64).sum(axis=1)
    if np.abs(bias).max(initial=0) >= 2**31:
        raise OverflowError(f"layer {n}: folded bias does not fit int32")
    return (
        _c_array("int8_t", f"{cid}_w", w.reshape(-1))
        + _c_array("int32_t", f"{cid}_b", bias)
        + _c_array("int32_t", f"{cid}_m", d["mult"])
        + _c_array("int8_t", f"{cid}_s", d["shift"])
    )


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


def _layer_code(qg: nx.DiGraph, plan: MemoryPlan, n: str, fn: str, cid: str) -> str:
    d = qg.nodes[n]
    op = d["op"]
    ins = inputs_of(qg, n)
    c, oh, ow = d["shape"]
    cin, ih, iw = qg.nodes[ins[0]]["shape"]
    zp_in = qg.nodes[ins[0]]["q"][1]
    common = dict(name=n, fn=fn, W=cid, head=_WIN_HEAD, src=str(d.get("source", "")).replace("*/", "* /"), QMIN=d["qmin"], QMAX=d["qmax"], ZPOUT=d["q"][1], ZPIN=zp_in)
    if op == "conv":
        k = d["kernel"]
        return _CONV.substitute(common, K=k, S=d["stride"], P=d["padding"], CIN=cin, COUT=c, IH=ih, IW=iw, OH=oh, OW=ow, KKC=k * k * cin)
    if op == "pwconv":
        return _PWCONV.substitute(common, S=d["stride"], CIN=cin, COUT=c, IH=ih, IW=iw, OH=oh, OW=ow)
    if op == "dwconv":
        inplace = n in plan.inplace
        store = "tmp[(oy - oy0) * ow + (ox - ox0)]" if inplace else f"out[((oy - oby) * obw + (ox - obx)) * {c} + c]"
        copy = Template(_INPLACE_COPY).substitute(C=c) if inplace else ""
        return _DWCONV.substitute(
            common, K=d["kernel"], S=d["stride"], P=d["padding"], C=c, IH=ih, IW=iw, OH=oh, OW=ow, store=store, copy_back=copy, inplace_note=", in place" if inplace else ""
        )
    if op == "linear":
        return _LINEAR.substitute(common, IN=cin * ih * iw, OUT=c)
    if op == "add":
        (ma, sa), (mb, sb) = d["add_mult"]
        mo, so = d["out_mult"]
        from .quantize import ADD_LEFT_SHIFT

        return _ADD.substitute(
            common, C=c, ZA=qg.nodes[ins[0]]["q"][1], ZB=qg.nodes[ins[1]]["q"][1], LS=ADD_LEFT_SHIFT, MA=ma, SA=sa, MB=mb, SB=sb, MO=mo, SO=so, ZO=d["q"][1]
        )
    if op == "avgpool":
        k = d["kernel"]
        return _AVGPOOL.substitute(common, K=k, S=d["stride"], C=c, KK=k * k)
    if op == "global_avgpool":
        return _GAP.substitute(common, C=c, IH=ih, IW=iw, HW=ih * iw)
    if op == "relu":
        return _RELU.substitute(common, C=c)
    if op == "concat":
        lines = [f"\n/* {n}: concatenation of {len(ins)} tensors along channels */", f"static void {fn}(const int8_t *const *in, int8_t *out, const int16_t *win) {{", _WIN_HEAD.rstrip("\n"), "    int oy, ox, c;"]
        lines.append("    for (oy = oy0; oy < oy1; oy++) for (ox = ox0; ox < ox1; ox++) {")
        lines.append(f"        int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * {c};")
        off = 0
        for k, (src, (m, s)) in enumerate(zip(ins, d["in_mult"])):
            ck = qg.nodes[src]["shape"][0]
            zk = qg.nodes[src]["q"][1]
            b = 7 + 3 * k
            lines.append(f"        {{ const int8_t *pi = in[{k}] + ((oy - win[{b}]) * win[{b + 2}] + (ox - win[{b + 1}])) * {ck};")
            lines.append(
                f"          for (c = 0; c < {ck}; c++) po[{off} + c] = te_clamp(te_clamp(te_requant(pi[c] - ({zk}), {m}, {s}) + ({d['q'][1]}), -128, 127), {d['qmin']}, {d['qmax']}); }}"
            )
            off += ck
        lines += ["    }", "}"]
        return "\n".join(lines) + "\n"
    raise AssertionError(op)  # pragma: no cover


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
    if op == "add":
        return f"{fn}({args_in[0]}, {args_in[1]}, {out}, {win});"
    if op == "concat":
        return f"{{ const int8_t *const ins[{len(ins)}] = {{{', '.join(args_in)}}}; {fn}(ins, {out}, {win}); }}"
    return f"{fn}({args_in[0]}, {out}, {win});"


def generate_model_sources(qg: nx.DiGraph, plan: MemoryPlan) -> Dict[str, str]:
    """model.h, model.c and weights.h for a quantised graph and its plan."""
    if live_overlaps(plan):
        raise AssertionError(f"memory plan has overlapping live buffers: {live_overlaps(plan)[:3]}")
    inp, outp = qg.graph["input"], qg.graph["output"]
    c_in, h_in, w_in = qg.nodes[inp]["shape"]
    out_size = int(np.prod(qg.nodes[outp]["shape"]))
    s_in, zp_in = qg.nodes[inp]["q"]
    s_out, zp_out = qg.nodes[outp]["q"]
    header = f"""/* Generated by hwaml-tinyengine: int8 model, planned arena {plan.arena_bytes} bytes. */
#ifndef TE_MODEL_H
#define TE_MODEL_H
#include <stdint.h>

#define MODEL_ARENA_BYTES {plan.arena_bytes}
#define MODEL_INPUT_H {h_in}
#define MODEL_INPUT_W {w_in}
#define MODEL_INPUT_C {c_in}
#define MODEL_INPUT_SIZE {c_in * h_in * w_in}
#define MODEL_OUTPUT_SIZE {out_size}
#define MODEL_INPUT_SCALE {s_in!r}f
#define MODEL_INPUT_ZERO_POINT {zp_in}
#define MODEL_OUTPUT_SCALE {s_out!r}f
#define MODEL_OUTPUT_ZERO_POINT {zp_out}

/* Write one int8 input (H x W x C, quantised with the scale and zero point
 * above) here before model_run(); it is overwritten by the run. */
int8_t *model_input(void);
/* Valid after model_run() until the next write to model_input(). */
const int8_t *model_output(void);
void model_run(void);

#endif
"""
    weights = ["/* Generated by hwaml-tinyengine: constants in Flash. */", "#ifndef TE_WEIGHTS_H", "#define TE_WEIGHTS_H", "#include <stdint.h>", ""]
    funcs: List[str] = []
    tables: List[str] = []
    body: List[str] = []
    ids = {n: f"L{i}" for i, n in enumerate(plan.steps)}
    stage = plan.patch.layers if plan.patch is not None else []
    npatch = plan.patch.n**2 if plan.patch is not None else 1
    for n in plan.steps:
        cid = ids[n]
        fn = f"{cid}_{qg.nodes[n]['op']}"
        if qg.nodes[n]["op"] in ("conv", "pwconv", "dwconv", "linear"):
            weights.append(_weights(qg, n, cid))
        funcs.append(_layer_code(qg, plan, n, fn, cid))
        if n in stage:
            rows = [_window_rows(plan, n, p) for p in range(npatch)]
            width = len(rows[0])
            flat = [v for r in rows for v in r]
            tables.append(_c_array("int16_t", f"{cid}_win", flat, per_line=width))
        else:
            tables.append(_c_array("int16_t", f"{cid}_win", _window_rows(plan, n, 0)))
    weights.append("#endif")
    calls = []
    if stage:
        calls.append(f"    /* patch-based stage: {plan.patch.n}x{plan.patch.n} patches of '{plan.patch.split}' */")  # type: ignore[union-attr]
        calls.append(f"    for (p = 0; p < {npatch}; p++) {{")
        for n in stage:
            width = len(_window_rows(plan, n, 0))
            calls.append("        " + _call(qg, plan, n, f"{ids[n]}_{qg.nodes[n]['op']}", f"{ids[n]}_win + p * {width}"))
        calls.append("    }")
    for n in plan.steps:
        if n in stage:
            continue
        calls.append("    " + _call(qg, plan, n, f"{ids[n]}_{qg.nodes[n]['op']}", f"{ids[n]}_win"))
    body.append("void model_run(void) {")
    body.append("    int p = 0;")
    body.append("    (void)p;")
    body += calls
    body.append("}")
    source = "\n".join(
        [
            f"/* Generated by hwaml-tinyengine. {len(plan.steps)} layers, arena {plan.arena_bytes} bytes"
            + (f", patch stage {plan.patch.n}x{plan.patch.n} up to '{plan.patch.split}'" if plan.patch else "")
            + ". */",
            "#include <stdint.h>",
            '#include "model.h"',
            '#include "weights.h"',
            "",
            "/* The one arena: every activation and kernel buffer lives here at a planned offset. */",
            f"static union {{ int32_t align; int8_t bytes[{max(4, plan.arena_bytes)}]; }} te_arena;",
            "#define TE_ARENA (te_arena.bytes)",
            _RUNTIME,
            "/* ---- window tables: region computed, then output/input buffer origin and width ---- */",
            *tables,
            "/* ---- per-layer kernels ---- */",
            *funcs,
            "",
            f"int8_t *model_input(void) {{ return TE_ARENA + {plan.offset(inp)}; }}",
            f"const int8_t *model_output(void) {{ return TE_ARENA + {plan.offset(outp)}; }}",
            "",
            *body,
            "",
        ]
    )
    return {"model.h": header, "model.c": source, "weights.h": "\n".join(weights) + "\n"}


_MAIN = r"""/* Host runner: model_run_host IN.bin OUT.bin [REPEAT]. Inputs are int8 H x W x C
 * records, outputs int8 records; prints the mean time per inference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model.h"

int main(int argc, char **argv) {
    FILE *fi, *fo;
    static int8_t buf[MODEL_INPUT_SIZE];
    long n = 0;
    int repeat = argc > 3 ? atoi(argv[3]) : 1, r;
    double total = 0.0;
    if (argc < 3) { fprintf(stderr, "usage: %s IN.bin OUT.bin [REPEAT]\n", argv[0]); return 2; }
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) { fprintf(stderr, "cannot open input or output file\n"); return 2; }
    while (fread(buf, 1, MODEL_INPUT_SIZE, fi) == MODEL_INPUT_SIZE) {
        for (r = 0; r < repeat; r++) {
            clock_t t0 = clock();
            memcpy(model_input(), buf, MODEL_INPUT_SIZE);
            model_run();
            total += (double)(clock() - t0) / CLOCKS_PER_SEC;
        }
        fwrite(model_output(), 1, MODEL_OUTPUT_SIZE, fo);
        n++;
    }
    fclose(fi);
    fclose(fo);
    printf("inferences %ld ms_per_inference %.6f arena_bytes %d\n", n, n ? 1000.0 * total / (n * repeat) : 0.0, MODEL_ARENA_BYTES);
    return 0;
}
"""

_TEST_MAIN = r"""/* Host test harness: runs the embedded inputs and compares every output byte
 * with the Python int8 reference. Exit status 0 iff all match. */
#include <stdio.h>
#include <string.h>
#include "model.h"
#include "test_data.h"

int main(void) {
    int i, j, matched = 0;
    for (i = 0; i < TEST_N; i++) {
        const int8_t *out;
        int ok = 1;
        memcpy(model_input(), test_inputs[i], MODEL_INPUT_SIZE);
        model_run();
        out = model_output();
        for (j = 0; j < MODEL_OUTPUT_SIZE; j++) {
            if (out[j] != test_expected[i][j]) {
                if (ok) printf("vector %d: output[%d] = %d, expected %d\n", i, j, out[j], test_expected[i][j]);
                ok = 0;
            }
        }
        matched += ok;
    }
    printf("matched %d/%d\n", matched, TEST_N);
    return matched == TEST_N ? 0 : 1;
}
"""

_MAKEFILE = """# Generated by hwaml-tinyengine. `make` builds the host runner and test harness,
# `make test` runs the harness (bit-exact comparison with the Python reference).
CC ?= gcc
CFLAGS ?= {cflags}

all: model_run_host model_test

model_run_host: main.c model.c model.h weights.h
\t$(CC) $(CFLAGS) -o $@ main.c model.c

model_test: test_main.c model.c model.h weights.h test_data.h
\t$(CC) $(CFLAGS) -o $@ test_main.c model.c

test: model_test
\t./model_test

clean:
\trm -f model_run_host model_test

.PHONY: all test clean
"""


def _test_data(inputs: np.ndarray, expected: np.ndarray) -> str:
    n = len(inputs)
    lines = ["/* Generated: inputs and the Python int8 reference's outputs. */", "#include <stdint.h>", f"#define TEST_N {n}"]
    rows_in = ",\n".join("    {" + ", ".join(str(int(v)) for v in x.reshape(-1)) + "}" for x in inputs)
    rows_out = ",\n".join("    {" + ", ".join(str(int(v)) for v in y.reshape(-1)) + "}" for y in expected)
    lines.append(f"static const int8_t test_inputs[{n}][MODEL_INPUT_SIZE] = {{\n{rows_in}\n}};")
    lines.append(f"static const int8_t test_expected[{n}][MODEL_OUTPUT_SIZE] = {{\n{rows_out}\n}};")
    return "\n".join(lines) + "\n"


def generate_project(qg: nx.DiGraph, plan: MemoryPlan, out_dir: Any, test_inputs: Optional[np.ndarray] = None) -> CProject:
    """Write the C project; ``test_inputs`` (int8 NHWC) are embedded in the
    harness with the Python reference's outputs."""
    from .quantize import run_int8

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = generate_model_sources(qg, plan)
    if test_inputs is None:
        rng = np.random.default_rng(0)
        test_inputs = rng.integers(-128, 128, size=(4, *_input_hwc(qg)), dtype=np.int64).astype(np.int8)
    test_inputs = np.asarray(test_inputs, dtype=np.int8)
    expected = run_int8(qg, test_inputs)
    files["test_data.h"] = _test_data(test_inputs, expected)
    files["main.c"] = _MAIN
    files["test_main.c"] = _TEST_MAIN
    files["Makefile"] = _MAKEFILE.format(cflags=CFLAGS)
    for name, text in files.items():
        (out / name).write_text(text)
    c, h, w = qg.nodes[qg.graph["input"]]["shape"]
    return CProject(out, plan.arena_bytes, c * h * w, int(np.prod(qg.nodes[qg.graph["output"]]["shape"])), len(test_inputs))


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
        cmd = ["make", "-s", "-C", str(project.path), f"CC={cc}", target]
    else:
        srcs = {"model_run_host": ["main.c"], "model_test": ["test_main.c"]}
        for exe, main in srcs.items():
            if target in ("all", exe):
                subprocess.run([cc, *CFLAGS.split(), "-o", exe, *main, "model.c"], cwd=project.path, check=True, capture_output=True, text=True)
        return
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building {project.path} failed:\n{res.stdout}\n{res.stderr}")
    log.info("built %s in %.1fs", project.path, time.perf_counter() - t0)


def build_and_run(project: CProject, inputs: np.ndarray, repeat: int = 1) -> np.ndarray:
    """Build the host runner and run it on int8 NHWC ``inputs``; returns the
    int8 outputs ``(N, F)``. The time per inference is in ``project.last_ms``."""
    if not project.runner.exists():
        build_project(project, "model_run_host")
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    if inputs[0].size != project.input_size:
        raise ValueError(f"inputs have {inputs[0].size} values per sample, the model takes {project.input_size}")
    fin, fout = project.path / "inputs.bin", project.path / "outputs.bin"
    fin.write_bytes(inputs.tobytes())
    res = subprocess.run([str(project.runner), str(fin), str(fout), str(int(repeat))], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{project.runner} failed ({res.returncode}): {res.stderr}")
    parts = res.stdout.split()
    project.last_ms = float(parts[parts.index("ms_per_inference") + 1])  # type: ignore[attr-defined]
    return np.frombuffer(fout.read_bytes(), dtype=np.int8).reshape(len(inputs), project.output_size)


def run_test_harness(project: CProject) -> Dict[str, Any]:
    """``make test``: returns matched/total and the harness output."""
    if not project.tester.exists():
        build_project(project, "model_test")
    res = subprocess.run([str(project.tester)], capture_output=True, text=True, cwd=project.path)
    matched, total = 0, project.n_test_vectors
    for line in res.stdout.splitlines():
        if line.startswith("matched "):
            matched, total = (int(v) for v in line.split()[1].split("/"))
    return {"ok": res.returncode == 0 and matched == total, "matched": matched, "total": total, "stdout": res.stdout}
