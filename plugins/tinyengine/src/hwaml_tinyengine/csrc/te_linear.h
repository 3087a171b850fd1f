/* Kernel template: fully connected layer (inputs in H, W, C order); the input
 * zero point is folded into the bias. Define before including: TE_FN;
 * TE_WEIGHT, TE_BIAS, TE_MULT, TE_SHIFT; TE_IN, TE_OUT; TE_ZPOUT; TE_QMIN,
 * TE_QMAX.
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
static void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    int o, i;
    const int8_t *wp = TE_WEIGHT;
    (void)col; (void)win;
    for (o = 0; o < TE_OUT; o++) {
        int32_t acc = TE_BIAS[o];
        for (i = 0; i < TE_IN; i++) acc += (int32_t)in[i] * wp[i];
        wp += TE_IN;
        out[o] = TE_OUT_(te_requant(acc, TE_MULT[o], TE_SHIFT[o]) + TE_ZPOUT);
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
#undef TE_OUT_
