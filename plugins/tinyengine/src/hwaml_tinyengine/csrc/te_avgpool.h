/* Kernel template: average pooling TE_K x TE_K, stride TE_S, no padding,
 * rounding division. Define before including: TE_FN; TE_K, TE_S; TE_C; TE_QMIN,
 * TE_QMAX. The macros are undefined at the end. */
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, ky, kx, c;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * TE_C;
            for (c = 0; c < TE_C; c++) {
                int32_t acc = 0;
                for (ky = 0; ky < TE_K; ky++)
                    for (kx = 0; kx < TE_K; kx++)
                        acc += in[((oy * TE_S + ky - iby) * ibw + (ox * TE_S + kx - ibx)) * TE_C + c];
                po[c] = te_clamp(te_rounded_div(acc, TE_K * TE_K), TE_QMIN, TE_QMAX);
            }
        }
    }
}
#undef TE_FN
#undef TE_K
#undef TE_S
#undef TE_C
#undef TE_QMIN
#undef TE_QMAX
