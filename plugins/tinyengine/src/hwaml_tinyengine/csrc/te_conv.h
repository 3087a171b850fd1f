/* Kernel template: dense TE_K x TE_K convolution through an int16 im2col buffer.
 * Included once per layer by the generated model.c, after defining
 *   TE_FN (function name); TE_WEIGHT, TE_BIAS, TE_MULT, TE_SHIFT (constant arrays:
 *   int8 weights O x kh x kw x I, int32 biases, Q31 multipliers, shifts);
 *   TE_K, TE_S, TE_P (kernel, stride, padding); TE_CIN, TE_COUT; TE_IH, TE_IW
 *   (input height and width); TE_ZPIN, TE_ZPOUT (zero points); TE_QMIN, TE_QMAX
 *   (output clamp, the fused activation); TE_RQ (TE_RQ_FAST or TE_RQ_EXACT).
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
    int oy, ox, ky, kx, c, co, i;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            int16_t *cp = col;
            const int8_t *wp = TE_WEIGHT;
            int8_t *dst = out + ((oy - oby) * obw + (ox - obx)) * TE_COUT;
            for (ky = 0; ky < TE_K; ky++) {
                const int iy = oy * TE_S - TE_P + ky;
                for (kx = 0; kx < TE_K; kx++) {
                    const int ix = ox * TE_S - TE_P + kx;
                    if (iy < 0 || iy >= TE_IH || ix < 0 || ix >= TE_IW) {
                        for (c = 0; c < TE_CIN; c++) *cp++ = 0;
                    } else {
                        const int8_t *src = in + ((iy - iby) * ibw + (ix - ibx)) * TE_CIN;
                        for (c = 0; c < TE_CIN; c++) *cp++ = (int16_t)(src[c] - TE_ZPIN);
                    }
                }
            }
            for (co = 0; co < TE_COUT; co++) {
                int32_t acc = TE_BIAS[co];
                for (i = 0; i < TE_K * TE_K * TE_CIN; i++) acc += (int32_t)col[i] * wp[i];
                wp += TE_K * TE_K * TE_CIN;
                dst[co] = TE_OUT_(TE_RQ(acc, TE_MULT[co], TE_SHIFT[co]) + TE_ZPOUT);
            }
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
#undef TE_CIN
#undef TE_COUT
#undef TE_IH
#undef TE_IW
#undef TE_ZPIN
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
#undef TE_LUT
#undef TE_RQ
#undef TE_OUT_
