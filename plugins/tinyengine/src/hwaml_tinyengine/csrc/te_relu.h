/* Kernel template: a standalone clamp (a ReLU/ReLU6 that could not be fused
 * into its producer). Define before including: TE_FN; TE_C; TE_QMIN, TE_QMAX.
 * The macros are undefined at the end. */
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    int oy, ox, c;
    for (oy = oy0; oy < oy1; oy++)
        for (ox = ox0; ox < ox1; ox++)
            for (c = 0; c < TE_C; c++)
                out[((oy - oby) * obw + (ox - obx)) * TE_C + c] = te_clamp(in[((oy - iby) * ibw + (ox - ibx)) * TE_C + c], TE_QMIN, TE_QMAX);
}
#undef TE_FN
#undef TE_C
#undef TE_QMIN
#undef TE_QMAX
