/* Kernel template: global average pooling over TE_HW pixels, rounding division.
 * Define before including: TE_FN; TE_C; TE_HW; TE_QMIN, TE_QMAX. The macros are
 * undefined at the end. */
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, const int16_t *win) {
    int p, c;
    (void)win;
    for (c = 0; c < TE_C; c++) {
        int32_t acc = 0;
        for (p = 0; p < TE_HW; p++) acc += in[p * TE_C + c];
        out[c] = te_clamp(te_rounded_div(acc, TE_HW), TE_QMIN, TE_QMAX);
    }
}
#undef TE_FN
#undef TE_C
#undef TE_HW
#undef TE_QMIN
#undef TE_QMAX
