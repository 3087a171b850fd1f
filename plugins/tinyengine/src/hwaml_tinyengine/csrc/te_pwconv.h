/* Kernel template: pointwise (1 x 1) convolution; the input zero point is folded
 * into the bias. Define before including: TE_FN; TE_WEIGHT, TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_S (stride); TE_CIN, TE_COUT; TE_ZPOUT; TE_QMIN, TE_QMAX.
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
static void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, c, co;
    (void)col;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *src = in + ((oy * TE_S - iby) * ibw + (ox * TE_S - ibx)) * TE_CIN;
            int8_t *dst = out + ((oy - oby) * obw + (ox - obx)) * TE_COUT;
            const int8_t *wp = TE_WEIGHT;
            for (co = 0; co < TE_COUT; co++) {
                int32_t acc = TE_BIAS[co];
                for (c = 0; c < TE_CIN; c++) acc += (int32_t)src[c] * wp[c];
                wp += TE_CIN;
                dst[co] = TE_OUT_(te_requant(acc, TE_MULT[co], TE_SHIFT[co]) + TE_ZPOUT);
            }
        }
    }
}
#undef TE_FN
#undef TE_WEIGHT
#undef TE_BIAS
#undef TE_MULT
#undef TE_SHIFT
#undef TE_S
#undef TE_CIN
#undef TE_COUT
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
#undef TE_LUT
#undef TE_OUT_
