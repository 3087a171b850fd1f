/* Kernel template: concatenation of TE_NIN tensors along channels, each
 * requantised to the output scale. TE_PARTS is a constant int32 table with four
 * entries per input: channels, zero point, Q31 multiplier, shift. Define before
 * including: TE_FN; TE_NIN; TE_PARTS; TE_COUT; TE_ZPOUT; TE_QMIN, TE_QMAX.
 * The macros are undefined at the end. */
TE_KERNEL void TE_FN(const int8_t *const *in, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    int oy, ox, c, k;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * TE_COUT;
            for (k = 0; k < TE_NIN; k++) {
                const int16_t *w = win + 7 + 3 * k; /* by bx bw of input k */
                const int32_t *q = TE_PARTS + 4 * k;
                const int8_t *pi = in[k] + ((oy - w[0]) * w[2] + (ox - w[1])) * q[0];
                for (c = 0; c < q[0]; c++)
                    *po++ = te_clamp(te_clamp(te_requant(pi[c] - q[1], q[2], (int)q[3]) + TE_ZPOUT, -128, 127), TE_QMIN, TE_QMAX);
            }
        }
    }
}
#undef TE_FN
#undef TE_NIN
#undef TE_PARTS
#undef TE_COUT
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
