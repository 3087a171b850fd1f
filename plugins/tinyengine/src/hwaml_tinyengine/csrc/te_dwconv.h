/* Kernel template: depthwise TE_K x TE_K convolution, channel by channel over the
 * NHWC tensor (TinyEngine's in-place order). Per channel the K*K weights, the
 * bias and the requantisation constants are loaded once (on DSP cores the weights
 * are packed in int16 pairs, used by SMLABB/SMLABT, so they stay in registers);
 * the interior outputs run the fully unrolled window without bounds checks, the
 * border outputs read the input zero point for padded taps. The bias carries
 * -ZPIN * sum(w) (folded by the generator), so padding by ZPIN is padding by zero.
 * With TE_INPLACE 1 the output overwrites the input: each channel is computed
 * into the one-channel buffer tmp, then copied over the (now dead) input channel.
 * Define before including: TE_FN; TE_WEIGHT (kh x kw x C), TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_K, TE_S, TE_P; TE_C; TE_IH, TE_IW; TE_ZPIN, TE_ZPOUT; TE_QMIN,
 * TE_QMAX; TE_INPLACE (0 or 1); TE_RQ (TE_RQ_FAST or TE_RQ_EXACT).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
#define TE_KK_ (TE_K * TE_K)
#define TE_NP_ ((TE_KK_ + 1) / 2)
/* the interior: outputs whose whole window lies inside the input (full-tensor coordinates) */
#define TE_Y_LO_ ((TE_P + TE_S - 1) / TE_S)
#define TE_Y_HI_ ((TE_IH - TE_K + TE_P) >= 0 ? (TE_IH - TE_K + TE_P) / TE_S + 1 : 0)
#define TE_X_LO_ ((TE_P + TE_S - 1) / TE_S)
#define TE_X_HI_ ((TE_IW - TE_K + TE_P) >= 0 ? (TE_IW - TE_K + TE_P) / TE_S + 1 : 0)
#if TE_DSP
#define TE_TAP_(acc, x, t) (acc) = ((t) & 1) ? __smlabt((x), wp[(t) >> 1], (acc)) : __smlabb((x), wp[(t) >> 1], (acc))
#else
#define TE_TAP_(acc, x, t) (acc) += (x) * wk[t]
#endif
static void TE_FN(const int8_t *in, int8_t *out, int8_t *tmp, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0;
    const int rs = ibw * TE_C; /* input row stride */
    const int ylo = oy0 > TE_Y_LO_ ? oy0 : TE_Y_LO_, yhi = oy1 < TE_Y_HI_ ? oy1 : TE_Y_HI_;
    const int xlo = ox0 > TE_X_LO_ ? ox0 : TE_X_LO_, xhi = ox1 < TE_X_HI_ ? ox1 : TE_X_HI_;
    int oy, ox, ky, kx, c, t;
    (void)tmp; (void)ow; (void)oby; (void)obx; (void)obw;
    for (c = 0; c < TE_C; c++) {
        int32_t wk[TE_KK_];
        const int32_t bias = TE_BIAS[c], mult = TE_MULT[c], shift = TE_SHIFT[c];
#if TE_DSP
        uint32_t wp[TE_NP_];
#endif
#if TE_INPLACE
        int8_t *dst = tmp;
        const int dstep = 1;
#else
        int8_t *dst = out + c;
        const int dstep = TE_C;
#endif
        TE_UNROLL_ALL
        for (t = 0; t < TE_KK_; t++) wk[t] = TE_WEIGHT[t * TE_C + c];
#if TE_DSP
        TE_UNROLL_ALL
        for (t = 0; t < TE_NP_; t++) wp[t] = (uint16_t)wk[2 * t] | (2 * t + 1 < TE_KK_ ? (uint32_t)(uint16_t)wk[2 * t + 1] << 16 : 0u);
#endif
        for (oy = oy0; oy < oy1; oy++) {
            const int inner = oy >= ylo && oy < yhi;
            int8_t *d = dst + ((TE_INPLACE ? (oy - oy0) * ow - ox0 : (oy - oby) * obw - obx)) * dstep;
            for (ox = ox0; ox < ox1; ox++) {
                int32_t acc = bias;
                if (inner && ox >= xlo && ox < xhi) {
                    /* the window's top-left input, then the unrolled K x K taps */
                    const int8_t *s = in + ((oy * TE_S - TE_P - iby) * ibw + (ox * TE_S - TE_P - ibx)) * TE_C + c;
                    for (; ox < xhi; ox++, s += TE_S * TE_C) {
                        acc = bias;
                        TE_UNROLL_ALL
                        for (ky = 0; ky < TE_K; ky++)
                            TE_UNROLL_ALL
                            for (kx = 0; kx < TE_K; kx++) TE_TAP_(acc, (int32_t)s[ky * rs + kx * TE_C], ky * TE_K + kx);
                        d[ox * dstep] = TE_OUT_(TE_RQ(acc, mult, shift) + TE_ZPOUT);
                    }
                    ox--;
                    continue;
                }
                TE_UNROLL_ALL
                for (ky = 0; ky < TE_K; ky++) {
                    const int iy = oy * TE_S - TE_P + ky;
                    TE_UNROLL_ALL
                    for (kx = 0; kx < TE_K; kx++) {
                        const int ix = ox * TE_S - TE_P + kx;
                        const int32_t x = (iy < 0 || iy >= TE_IH || ix < 0 || ix >= TE_IW) ? TE_ZPIN : in[((iy - iby) * ibw + (ix - ibx)) * TE_C + c];
                        TE_TAP_(acc, x, ky * TE_K + kx);
                    }
                }
                d[ox * dstep] = TE_OUT_(TE_RQ(acc, mult, shift) + TE_ZPOUT);
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
#undef TE_RQ
#undef TE_OUT_
#undef TE_KK_
#undef TE_NP_
#undef TE_Y_LO_
#undef TE_Y_HI_
#undef TE_X_LO_
#undef TE_X_HI_
#undef TE_TAP_
