/* Kernel template: fully connected layer (inputs in H, W, C order); the input
 * zero point is folded into the bias. Define before including: TE_FN;
 * TE_WEIGHT, TE_BIAS, TE_MULT, TE_SHIFT; TE_IN, TE_OUT; TE_ZPOUT; TE_QMIN,
 * TE_QMAX; TE_RQ
 * (TE_RQ_FAST or TE_RQ_EXACT).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    int o, i;
    const int8_t *wp = TE_WEIGHT;
    (void)col; (void)win;
    /* two outputs per pass over the input; on DSP cores SXTB16 + SMLAD, 4 inputs per load */
    for (o = 0; o + 1 < TE_OUT; o += 2) {
        const int8_t *w1 = wp + TE_IN;
        int32_t a0 = TE_BIAS[o], a1 = TE_BIAS[o + 1];
        i = 0;
#if TE_DSP
        TE_UNROLL_4
        for (; i + 4 <= TE_IN; i += 4) {
            const uint32_t x4 = te_ld32(in + i), u4 = te_ld32(wp + i), v4 = te_ld32(w1 + i);
            const int32_t xe = __sxtb16(x4), xo = te_sxtb16_ror8(x4);
            a0 = __smlad(xo, te_sxtb16_ror8(u4), __smlad(xe, __sxtb16(u4), a0));
            a1 = __smlad(xo, te_sxtb16_ror8(v4), __smlad(xe, __sxtb16(v4), a1));
        }
#endif
        for (; i < TE_IN; i++) {
            a0 += (int32_t)in[i] * wp[i];
            a1 += (int32_t)in[i] * w1[i];
        }
        out[o] = TE_OUT_(te_rq(a0, te_rqc_of(TE_MULT[o], TE_SHIFT[o], TE_ZPOUT, TE_RQ), TE_RQ));
        out[o + 1] = TE_OUT_(te_rq(a1, te_rqc_of(TE_MULT[o + 1], TE_SHIFT[o + 1], TE_ZPOUT, TE_RQ), TE_RQ));
        wp += 2 * TE_IN;
    }
    if (TE_OUT & 1) {
        int32_t acc = TE_BIAS[TE_OUT - 1];
        for (i = 0; i < TE_IN; i++) acc += (int32_t)in[i] * wp[i];
        out[TE_OUT - 1] = TE_OUT_(te_rq(acc, te_rqc_of(TE_MULT[TE_OUT - 1], TE_SHIFT[TE_OUT - 1], TE_ZPOUT, TE_RQ), TE_RQ));
    }
}
#undef TE_FN
#undef TE_WEIGHT
#undef TE_BIAS
#undef TE_MULT
#undef TE_SHIFT
#undef TE_IN
#undef TE_OUT
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
#undef TE_LUT
#undef TE_RQ
#undef TE_OUT_
