/* Kernel template: depthwise TE_K x TE_K convolution, channel by channel.
 * With TE_INPLACE 1 the output overwrites the input: each channel is computed
 * into the one-channel buffer tmp, then copied over the (now dead) input channel.
 * Define before including: TE_FN; TE_WEIGHT (kh x kw x C), TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_K, TE_S, TE_P; TE_C; TE_IH, TE_IW; TE_ZPIN, TE_ZPOUT; TE_QMIN,
 * TE_QMAX; TE_INPLACE (0 or 1).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
static void TE_FN(const int8_t *in, int8_t *out, int8_t *tmp, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0;
    int oy, ox, ky, kx, c;
    (void)tmp; (void)ow; (void)oby; (void)obx; (void)obw;
    for (c = 0; c < TE_C; c++) {
        for (oy = oy0; oy < oy1; oy++) {
            for (ox = ox0; ox < ox1; ox++) {
                int32_t acc = TE_BIAS[c];
                int8_t v;
                for (ky = 0; ky < TE_K; ky++) {
                    const int iy = oy * TE_S - TE_P + ky;
                    if (iy < 0 || iy >= TE_IH) continue;
                    for (kx = 0; kx < TE_K; kx++) {
                        const int ix = ox * TE_S - TE_P + kx;
                        if (ix < 0 || ix >= TE_IW) continue;
                        acc += (int32_t)(in[((iy - iby) * ibw + (ix - ibx)) * TE_C + c] - TE_ZPIN) * TE_WEIGHT[(ky * TE_K + kx) * TE_C + c];
                    }
                }
                v = TE_OUT_(te_requant(acc, TE_MULT[c], TE_SHIFT[c]) + TE_ZPOUT);
#if TE_INPLACE
                tmp[(oy - oy0) * ow + (ox - ox0)] = v;
#else
                out[((oy - oby) * obw + (ox - obx)) * TE_C + c] = v;
#endif
            }
        }
#if TE_INPLACE
        {   /* channel c of the input is dead: write the output over it */
            const int n = (oy1 - oy0) * ow;
            int p;
            for (p = 0; p < n; p++) out[p * TE_C + c] = tmp[p];
        }
#endif
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
#undef TE_LUT
#undef TE_OUT_
