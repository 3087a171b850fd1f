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
#define TE_KKC_ (TE_K * TE_K * TE_CIN)
#define TE_KKC4_ (TE_KKC_ & ~3)
/* on DSP cores the column is stored with each group of four reordered (0, 2, 1, 3)
 * so that its int16 pairs match SXTB16 of four weights and SXTB16 of them rotated */
#if TE_DSP
#define TE_POS_(j) ((j) < TE_KKC4_ ? (((j) & ~3) | (((j) & 1) << 1) | (((j) & 2) >> 1)) : (j))
#else
#define TE_POS_(j) (j)
#endif
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, ky, kx, c, co, i;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *wp = TE_WEIGHT;
            int8_t *dst = out + ((oy - oby) * obw + (ox - obx)) * TE_COUT;
            int j = 0;
            TE_UNROLL_ALL
            for (ky = 0; ky < TE_K; ky++) {
                const int iy = oy * TE_S - TE_P + ky;
                TE_UNROLL_ALL
                for (kx = 0; kx < TE_K; kx++) {
                    const int ix = ox * TE_S - TE_P + kx;
                    if (iy < 0 || iy >= TE_IH || ix < 0 || ix >= TE_IW) {
                        TE_UNROLL_ALL
                        for (c = 0; c < TE_CIN; c++, j++) col[TE_POS_(j)] = 0;
                    } else {
                        const int8_t *src = in + ((iy - iby) * ibw + (ix - ibx)) * TE_CIN;
                        TE_UNROLL_ALL
                        for (c = 0; c < TE_CIN; c++, j++) col[TE_POS_(j)] = (int16_t)(src[c] - TE_ZPIN);
                    }
                }
            }
            for (co = 0; co < TE_COUT; co++) {
                int32_t acc = TE_BIAS[co];
                i = 0;
#if TE_DSP
                {
                    const int16_t *cp = col;
                    TE_UNROLL_4
                    for (; i < TE_KKC4_; i += 4, cp += 4) {
                        const uint32_t w4 = te_ld32(wp + i);
                        uint32_t c01, c23;
                        __builtin_memcpy(&c01, cp, 4);
                        __builtin_memcpy(&c23, cp + 2, 4);
                        acc = __smlad((int32_t)c23, te_sxtb16_ror8(w4), __smlad((int32_t)c01, __sxtb16(w4), acc));
                    }
                }
#endif
                for (; i < TE_KKC_; i++) acc += (int32_t)col[i] * wp[i];
                wp += TE_KKC_;
                dst[co] = TE_OUT_(te_rq(acc, te_rqc_of(TE_MULT[co], TE_SHIFT[co], TE_ZPOUT, TE_RQ), TE_RQ));
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
#undef TE_KKC_
#undef TE_KKC4_
#undef TE_POS_
