/* Kernel template: depthwise TE_K x TE_K convolution, channel by channel over the
 * NHWC tensor (TinyEngine's in-place order). Per channel the K*K weights, the
 * bias and the requantisation constants are loaded once (on DSP cores the
 * weights of each row packed in int16 pairs for SMLAD); the channel's input rows
 * are gathered once each, as int16, into a ring of K rows that already carry
 * the padding (the input zero point ZPIN left and right of the tensor, and a
 * row of ZPIN for the rows above and below it), so every output, border or
 * interior, runs the same unrolled K x K window without bounds checks: on DSP
 * cores one unaligned 32-bit load and one SMLAD per two taps. The bias carries
 * -ZPIN * sum(w) (folded by the generator), so padding by ZPIN is padding by zero.
 * With TE_INPLACE 1 the output overwrites the input (out == in, TinyEngine's
 * in-place depthwise): output row oy of channel c is written when every input
 * row it lands on has been gathered (rows up to oy S - P + K - 1: the output
 * tile is no wider than the input window), and only over channel c, so no
 * temporary channel buffer is needed. The ring starts TE_TMPB bytes into the
 * scratch. A call whose input window needs no padding (an interior tile of the
 * patch stage) takes the direct path instead (TE_DIRECT_: no ring).
 * Define before including: TE_FN; TE_WEIGHT (kh x kw x C), TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_K, TE_S, TE_P; TE_C; TE_IH, TE_IW; TE_ZPIN, TE_ZPOUT; TE_QMIN,
 * TE_QMAX; TE_INPLACE (0 or 1); TE_TMPB; TE_RQ (TE_RQ_FAST or TE_RQ_EXACT).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
#define TE_KK_ (TE_K * TE_K)
#define TE_KP_ (TE_K / 2) /* weight pairs per row */
#define TE_DIRECT_ TE_CAT_(TE_FN, _direct)
/* The direct path, for a call whose input window lies inside the tensor (no
 * padding: the interior tiles of the patch stage, or a layer without padding):
 * each output reads its K x K taps straight from the int8 NHWC input (one LDRSB
 * and one multiply-accumulate per tap: on DSP cores SMLABB/SMLABT against the
 * channel's weights packed in int16 pairs, which stay in registers), with no
 * ring to gather, so a small tile does not pay for a window of (w - 1) S + K
 * columns per channel and row. In place (out == in), output (i, j) of channel c
 * is written straight over the input once computed: the caller checks that it
 * lands before the first tap of output (i, j + 1), so no tap still to be read
 * is overwritten (true for every buffer the planner lays out: the output tile
 * starts where its input window does). */
TE_KERNEL void TE_DIRECT_(const int8_t *in, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0, oh = oy1 - oy0;
    const int rs = ibw * TE_C; /* input row stride */
    const int8_t *const src0 = in + ((oy0 * TE_S - TE_P - iby) * ibw + (ox0 * TE_S - TE_P - ibx)) * TE_C;
    int8_t *const dst0 = out + ((oy0 - oby) * obw + (ox0 - obx)) * TE_C;
    const int dskip = (obw - ow) * TE_C;
    int c, i, t;
    for (c = 0; c < TE_C; c++) {
        const int32_t bias = TE_BIAS[c];
        const te_rqc q = te_rqc_of(TE_MULT[c], TE_SHIFT[c], TE_ZPOUT, TE_RQ);
#if TE_DSP
        int32_t wq[(TE_KK_ + 1) / 2]; /* taps 2i, 2i + 1 as an int16 pair */
        TE_UNROLL_ALL
        for (t = 0; t < TE_KK_; t += 2)
            wq[t / 2] = (int32_t)((uint32_t)(uint16_t)TE_WEIGHT[t * TE_C + c] | (t + 1 < TE_KK_ ? (uint32_t)(uint16_t)TE_WEIGHT[(t + 1) * TE_C + c] << 16 : 0u));
#else
        int32_t wk[TE_KK_];
        TE_UNROLL_ALL
        for (t = 0; t < TE_KK_; t++) wk[t] = TE_WEIGHT[t * TE_C + c];
#endif
        int8_t *d = dst0 + c;
        for (i = 0; i < oh; i++, d += dskip) {
            const int8_t *s = src0 + i * TE_S * rs + c;
            int8_t *const dend = d + ow * TE_C;
            for (; d < dend; d += TE_C, s += TE_S * TE_C) {
                int32_t acc = bias;
                TE_UNROLL_ALL
                for (t = 0; t < TE_KK_; t++) {
                    const int32_t x = s[(t / TE_K) * rs + (t % TE_K) * TE_C];
#if TE_DSP
                    acc = (t & 1) ? __smlabt(x, wq[t / 2], acc) : __smlabb(x, wq[t / 2], acc);
#else
                    acc += x * wk[t];
#endif
                }
                *d = TE_OUT_(te_rq(acc, q, TE_RQ));
            }
        }
    }
}
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, int8_t *tmp, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0;
    const int rl = (ow - 1) * TE_S + TE_K, rle = (rl + 1) & ~1; /* ring row: entries, stride */
    int16_t *const ring = (int16_t *)(void *)(tmp + TE_TMPB);
    int16_t *const pad = ring + TE_K * rle;
    const int ix0 = ox0 * TE_S - TE_P; /* full-tensor column of ring entry 0 */
    const int jlo = ix0 < 0 ? -ix0 : 0, jhi = TE_IW - ix0 < rl ? TE_IW - ix0 : rl;
    const int iyf = oy0 * TE_S - TE_P; /* the first input row of the call */
    int oy, ky, kx, c, j, t;
    /* a window inside the tensor (an interior tile of the patch stage) needs no
     * padding: the direct path reads the taps from the input (TE_DIRECT_ above) */
    if (iyf >= 0 && (oy1 - 1) * TE_S - TE_P + TE_K <= TE_IH && ix0 >= 0 && ix0 + rl <= TE_IW &&
        (!TE_INPLACE || ((oy0 - oby) * obw + (ox0 - obx) < (iyf - iby) * ibw + ix0 + TE_S - ibx && obw <= TE_S * ibw))) {
        TE_DIRECT_(in, out, win);
        return;
    }
    /* the padding: the ZPIN row, and the ring's columns outside the tensor */
    for (j = 0; j < rl; j++) pad[j] = TE_ZPIN;
    for (t = 0; t < TE_K; t++) {
        for (j = 0; j < jlo; j++) ring[t * rle + j] = TE_ZPIN;
        for (j = jhi; j < rl; j++) ring[t * rle + j] = TE_ZPIN;
    }
    for (c = 0; c < TE_C; c++) {
        int32_t wk[TE_KK_];
        const int32_t bias = TE_BIAS[c];
        const te_rqc q = te_rqc_of(TE_MULT[c], TE_SHIFT[c], TE_ZPOUT, TE_RQ);
        int next = iyf, base = 0; /* the next input row to gather; the ring slot of row oy*S-P */
        int16_t *slot = ring;      /* the ring row the next input row goes to */
        const int8_t *src = in + ((iyf - iby) * ibw + (ix0 + jlo - ibx)) * TE_C + c; /* its first entry */
#if TE_DSP
        int32_t wp[TE_K][TE_KP_ > 0 ? TE_KP_ : 1];
        int32_t wo[(TE_K + 1) / 2]; /* the odd taps (kx = K - 1) of rows 2i, 2i + 1 as an int16 pair */
#endif
        TE_UNROLL_ALL
        for (t = 0; t < TE_KK_; t++) wk[t] = TE_WEIGHT[t * TE_C + c];
#if TE_DSP
        TE_UNROLL_ALL
        for (ky = 0; ky < TE_K; ky++)
            TE_UNROLL_ALL
            for (kx = 0; kx < TE_KP_; kx++)
                wp[ky][kx] = (int32_t)((uint32_t)(uint16_t)wk[ky * TE_K + 2 * kx] | ((uint32_t)(uint16_t)wk[ky * TE_K + 2 * kx + 1] << 16));
        TE_UNROLL_ALL
        for (ky = 0; ky < TE_K; ky += 2)
            wo[ky / 2] = (int32_t)((uint32_t)(uint16_t)wk[ky * TE_K + TE_K - 1] | (ky + 1 < TE_K ? (uint32_t)(uint16_t)wk[(ky + 1) * TE_K + TE_K - 1] << 16 : 0u));
#endif
        for (oy = oy0; oy < oy1; oy++) {
            const int16_t *rp[TE_K];
            int8_t *d = out + ((oy - oby) * obw + (ox0 - obx)) * TE_C + c;
            /* gather the input rows this output row needs that are not in the ring yet */
            for (; next < oy * TE_S - TE_P + TE_K; next++) {
                if (next >= 0 && next < TE_IH) {
                    const int8_t *sp = src;
                    int16_t *r = slot + jlo, *const rend = slot + jhi;
                    for (t = (jhi - jlo) & 3; t > 0; t--) {
                        *r++ = *sp;
                        sp += TE_C;
                    }
                    for (; r < rend; r += 4, sp += 4 * TE_C) { /* four entries per step */
                        r[0] = sp[0];
                        r[1] = sp[TE_C];
                        r[2] = sp[2 * TE_C];
                        r[3] = sp[3 * TE_C];
                    }
                }
                src += ibw * TE_C;
                slot += rle;
                if (slot == pad) slot = ring;
            }
            TE_UNROLL_ALL
            for (ky = 0; ky < TE_K; ky++) {
                const int iy = oy * TE_S - TE_P + ky;
                int s = base + ky;
                if (s >= TE_K) s -= TE_K;
                rp[ky] = (iy >= 0 && iy < TE_IH) ? ring + s * rle : pad;
            }
            for (j = 0; j < ow; j++, d += TE_C) {
                int32_t acc = bias;
                TE_UNROLL_ALL
                for (ky = 0; ky < TE_K; ky++) {
                    const int16_t *r = rp[ky] + j * TE_S;
#if TE_DSP
                    TE_UNROLL_ALL
                    for (kx = 0; kx < TE_KP_; kx++) {
                        uint32_t x2;
                        __builtin_memcpy(&x2, r + 2 * kx, 4);
                        acc = __smlad((int32_t)x2, wp[ky][kx], acc);
                    }
                    if (TE_K & 1) acc = (ky & 1) ? __smlabt((int32_t)r[TE_K - 1], wo[ky / 2], acc) : __smlabb((int32_t)r[TE_K - 1], wo[ky / 2], acc);
#else
                    TE_UNROLL_ALL
                    for (kx = 0; kx < TE_K; kx++) acc += (int32_t)r[kx] * wk[ky * TE_K + kx];
#endif
                }
                *d = TE_OUT_(te_rq(acc, q, TE_RQ));
            }
            base += TE_S;
            while (base >= TE_K) base -= TE_K;
        }
    }
}
#undef TE_FN
#undef TE_WEIGHT
#undef TE_BIAS
#undef TE_MULT
#undef TE_SHIFT
#undef TE_K
#undef TE_S
#undef TE_P
#undef TE_C
#undef TE_IH
#undef TE_IW
#undef TE_ZPIN
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
#undef TE_INPLACE
#undef TE_TMPB
#undef TE_LUT
#undef TE_RQ
#undef TE_OUT_
#undef TE_KK_
#undef TE_KP_
#undef TE_DIRECT_
